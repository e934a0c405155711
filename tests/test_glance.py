"""The decision at a glance (core.results.glance): hand-made reports read into the right rows, what is not measured
says which command measures it, and the Overview opens with it."""
from __future__ import annotations

import pytest

from core.results.glance import EXTERNAL, SHORTCUT, WINDOWS, glance, glance_table

TEST = {"two-step": {"auc": {"value": 0.82, "ci": [0.76, 0.88]}}, "lesion-share": {"auc": {"value": 0.63, "ci": [0.5, 0.7]}}}


def auc(v):
    return {"auc": v, "auc_ci": [v - 0.05, v + 0.01]}


EXT = {"comparisons": {
    "covid-ct-md P001 infected vs normal001": {"role": "chooses", "branches": {"two-step": auc(0.99)}},
    "covid-ct-md P002 infected vs normal002": {"role": "reports", "branches": {"two-step": auc(0.97),
                                                                               "lesion-share": auc(0.95)}},
    "covid-ct-md P002 infected vs cap002": {"role": "reports", "branches": {"two-step": auc(0.95),
                                                                            "lesion-share": auc(0.76)}},
    "semiseg train": {"role": "chooses", "branches": {"two-step": {"sensitivity": 0.98, "sensitivity_ci": [0.9, 1]}}},
    "semiseg test": {"role": "reports", "branches": {"two-step": {"sensitivity": 0.94, "sensitivity_ci": [0.83, 0.98]},
                                                     "lesion-share": {"sensitivity": 1.0, "sensitivity_ci": [0.93, 1]}}}},
    "patients": {p: {"role": role, "diagnosis": "", "label": label,
                     "scan_statistic": {"two-step": 0.5, "lesion-share": 0.5},
                     "scan_covid": {"two-step": call, "lesion-share": True}}
                 for p, role, label, call in (("P001", "chooses", 1, False), ("P002", "reports", 1, True),
                                              ("normal002", "reports", 0, True), ("cap002", "reports", 0, False))}}
WIN = {"windows": [{"product": product, "comparisons": {
    "normal": {"branches": {"two-step": auc(n), "lesion-share": auc(0.95)}},
    "pneumonia": {"branches": {"two-step": auc(p), "lesion-share": auc(lp)}}}}
    for product, n, p, lp in ((True, 0.97, 0.95, 0.76), (False, 0.94, 0.96, 0.74), (False, 0.96, 0.91, 0.8))]}
SHORT = {"branches": {"two-step": {"lungs-blanked": auc(0.46), "lungs-readable": auc(0.8)},
                      "lesion-share": {"lungs-readable": auc(0.59)}}}


def test_each_row_reads_the_report_patients_and_sources():
    rows = glance("two-step", TEST, EXT, SHORT, WIN)
    table = glance_table(rows)
    assert list(table.decision) == ["0.820 [0.760, 0.880]", "0.800 [0.750, 0.810]", "0.970 [0.920, 0.980]",
                                    "0.950 [0.900, 0.960]", "0.940", "0.910", "2 of 3", "0.940 [0.830, 0.980]",
                                    "0.460 [0.410, 0.470]"]
    assert list(table["lesion share alone"]) == ["0.630", "0.590", "0.950", "0.760", "0.950", "0.740", "1 of 3",
                                                 "1.000", ""]
    assert "soft-tissue window" in rows[1].question
    assert "against normal slices" in rows[2].question and "against pneumonia slices" in rows[3].question
    # the lowest AUC among the other windows, never the product's own window
    assert rows[4].question == "Another hospital, its slices in 2 other lung windows: infected against normal slices"
    assert rows[5].measure == "lowest AUC" and "against pneumonia slices" in rows[5].question


def test_what_a_run_has_not_measured_names_its_command():
    rows = glance("two-step", TEST, None, None)
    assert rows[0].text() == "0.820 [0.760, 0.880]"
    assert [r.text() for r in rows[2:4] + rows[6:8]] == [f"not measured yet: {EXTERNAL}"] * 4
    assert [r.text() for r in rows[4:6]] == [f"not measured yet: {WINDOWS}"] * 2
    assert "in other lung windows" in rows[4].question
    assert rows[1].text() == rows[8].text() == f"not measured yet: {SHORTCUT}"
    older = glance("two-step", TEST, EXT, {"branches": {"two-step": {"lungs-blanked": auc(0.46)}}})
    assert older[1].text() == f"not measured yet: {SHORTCUT}"  # an audit from before (e): made again, it has it
    fusion = glance("fusion", TEST, EXT, SHORT)  # a branch the reports do not hold
    assert fusion[0].text().startswith("not measured yet") and fusion[6].text() == f"not measured yet: {EXTERNAL}"


def test_the_overview_opens_with_the_decision_at_a_glance(dash_env, rv):
    from test_dashboard import app, no_exception

    at = app("views/overview.py")
    no_exception(at)
    heads = [h.value for h in at.subheader]
    assert heads[0] == f"The decision at a glance · {rv.decision_branch()}"
    table = at.dataframe[0].value
    auc = rv.metrics("test", n_boot=10)[rv.decision_branch()]["auc"]["value"]
    assert table.decision[0].startswith(f"{auc:.3f} [")  # the run's own test AUC
    assert table.decision[2] == f"not measured yet: {EXTERNAL}"  # the session's run has no external.json

"""How far a scan's call can be trusted (core.trust.scan_call): hand-made scan tables and external reports whose
answers are counted here by hand; the engine's scoring of a series with the out-of-distribution flag on the
session's synthetic run."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.knowledge.scan import CANDIDATE_SHARES, RULE, decide, with_zones
from core.trust.ood import COLUMNS, FLAG_COLUMN
from core.trust.scan_call import assess, flag_columns, neighbours, record, share_calls
from tests.test_scan import hand_table

# 20 slices with a lung field: two stand out, the rest sit low. The top 10% (2 slices) reads high, the top 25% (5)
# and 50% (10) read low: at 0.6 the call turns with the share.
FEW = [0.95, 0.9] + [0.3] * 18
EVEN = list(np.linspace(0.7, 0.9, 20))  # every share reads above 0.6


def table(p, flagged=None):
    t = with_zones(hand_table(np.arange(len(p), dtype=float), [100] * len(p), [0] * len(p), [0] * len(p), p), True)
    if flagged is not None:
        t[FLAG_COLUMN] = [i in flagged for i in range(len(p))]
    return t


def external(calls: dict[str, tuple[str, int, float, bool]], aucs: dict[str, tuple[str, float]]) -> dict:
    """A hand external.json: patient -> (role, label, two-step statistic, its call); comparison -> (role, AUC)."""
    return {"rule": "top-quartile mean",
            "patients": {p: {"role": role, "diagnosis": "COVID-19" if label else "Normal", "label": label,
                             "scan_statistic": {"two-step": stat}, "scan_covid": {"two-step": call}}
                         for p, (role, label, stat, call) in calls.items()},
            "comparisons": {name: {"role": role, "branches": {"two-step": {"auc": auc,
                                                                             "auc_ci": [auc - 0.05, auc]}}}
                            for name, (role, auc) in aucs.items()}}


def test_a_call_that_turns_with_the_top_share_is_said_so():
    t = table(FEW)
    d = decide(t, "fusion", 0.6)
    calls = share_calls(t, d)
    assert [c.share for c in calls] == [0.10, RULE.top_share, 0.50] == list(neighbours())  # the rule's and its two
    assert CANDIDATE_SHARES == (0.05, 0.10, 0.25, 0.50, 1.0)  # ... neighbours among the candidates
    assert [c.covid for c in calls] == [True, False, False]
    assert calls[0].statistic == pytest.approx(0.925)
    assert calls[1].statistic == pytest.approx((0.95 + 0.9 + 3 * 0.3) / 5) == pytest.approx(d.statistic)
    trust = assess(t, d, None)
    assert d.covid is False and trust.steady is False
    line = trust.lines()[0]
    assert "0.550 lies 0.050 below the operating point 0.600" in line
    assert "turns at top share 10% (0.925)" in line
    assert trust.brief().startswith("Trust: the call turns within top shares 10% to 50%")
    steady = assess(table(EVEN), decide(table(EVEN), "fusion", 0.6), None)
    assert steady.steady is True and "the call is the same whether the top 10% to 50% of the slices count" in \
        steady.lines()[0]
    assert steady.brief().startswith("Trust: same call at top shares 10% to 50%")


def test_slices_unlike_the_training_ones_are_counted_among_those_that_drive_the_call():
    t = table(EVEN, flagged={19, 18, 3})  # slices 19 and 18 read highest: they drive the call, slice 3 does not
    d = decide(t, "fusion", 0.6)
    trust = assess(t, d, None)
    assert d.top == [19, 18, 17, 16, 15] and (trust.flagged_top, trust.flagged, trust.with_lung) == (2, 3, 20)
    assert "2 of the 5 slices that drive the call, 3 of the 20 with a lung field" in trust.lines()[1]
    assert "extrapolates" in trust.lines()[1]
    one = table([0.9] + [0.1] * 3, flagged={0})  # one slice drives the call: said in the singular
    one_d = decide(one, "fusion", 0.6)
    assert len(one_d.top) == 1 and "1 of the 1 slice that drives the call" in assess(one, one_d, None).lines()[1]
    # a slice without a lung field counts nowhere, flagged or not
    t.loc[3, "lung_found"] = False
    assert assess(t, decide(t, "fusion", 0.6), None).flagged == 2
    # scored without the flag: said, with why
    bare = assess(table(EVEN), d, None, "no features cached")
    assert bare.flagged is None and bare.lines()[1] == "No out-of-distribution flag for this scan: no features cached"


def test_the_record_on_another_hospital_reads_its_report_patients_only():
    ext = external({"P001": ("chooses", 1, 0.9, True), "P002": ("reports", 1, 0.8, True),
                    "normal002": ("reports", 0, 0.7, True), "cap002": ("reports", 0, 0.2, False)},
                   {"covid-ct-md P001 infected vs normal001": ("chooses", 0.99),
                    "covid-ct-md P002 infected vs normal002": ("reports", 0.91),
                    "covid-ct-md P002 infected vs cap002": ("reports", 0.85),
                    "covid-ct test": ("reports", 0.8)})
    held, aucs = record(ext, "two-step")
    assert [(h.patient, h.right) for h in held] == [("P002", True), ("normal002", False), ("cap002", True)]
    assert [(a.against, a.auc, a.low) for a in aucs] == [("normal", 0.91, pytest.approx(0.86)),
                                                          ("pneumonia", 0.85, pytest.approx(0.80))]
    assert assess(table(EVEN), decide(table(EVEN), "fusion", 0.6), ext).held_out == ()  # fusion: not scored there
    t = table(EVEN).rename(columns={"p_fusion": "p_two-step"})
    trust = assess(t, decide(t, "two-step", 0.6), ext)
    line = trust.lines()[2]
    assert "2 of 3 scan calls right: P002 (COVID-19) 0.800, normal002 (Normal) 0.700, cap002 (Normal) 0.200" in line
    assert "against normal slices: AUC 0.910 [0.860, 0.910]" in line and "pneumonia slices: AUC 0.850" in line
    assert "another hospital: 2 of 3 scan calls right, slice AUC 0.91 vs normal, 0.85 vs pneumonia" in trust.brief()
    assert "Not measured on another hospital" in assess(t, decide(t, "two-step", 0.6), None).lines()[2]
    other = assess(t, decide(t, "two-step", 0.6), {**ext, "rule": "top 10% mean"})
    assert "(calls made by rule 'top 10% mean')" in other.lines()[2]


def test_the_record_says_how_low_it_goes_in_other_lung_windows():
    ext = external({"P002": ("reports", 1, 0.8, True), "normal002": ("reports", 0, 0.3, False)},
                   {"covid-ct-md P002 infected vs normal002": ("reports", 0.91)})
    aucs = {(True, "normal"): 0.91, (False, "normal"): 0.87, (False, "pneumonia"): 0.8, (True, "pneumonia"): 0.86}
    windows = {"windows": [{"product": product, "comparisons": {
        against: {"branches": {"two-step": {"auc": aucs[(product, against)], "auc_ci": [0, 1]}}}
        for against in ("normal", "pneumonia")}} for product in (True, False, False)]}
    t = table(EVEN).rename(columns={"p_fusion": "p_two-step"})
    d = decide(t, "two-step", 0.6)
    line = assess(t, d, ext, windows=windows).lines()[2]
    assert line.endswith("Shown in 2 other lung windows, as another hospital may export them, those slice AUCs stay at "
                         "or above 0.870 against normal slices (0.910 in the product's window) and 0.800 against "
                         "pneumonia slices (0.860 in the product's window).")
    assert assess(t, d, ext).lines()[2].endswith("0.910 [0.860, 0.910].")  # no windows.json: the record alone
    assert "lung windows" not in assess(t, d, None, windows=windows).lines()[2]  # no record to qualify


def test_no_slice_with_a_lung_field_is_no_call_to_weigh():
    t = table([0.9, 0.8])
    t["lung_found"] = False
    trust = assess(t, decide(t, "fusion", 0.5), None)
    assert trust.steady is None
    assert trust.lines()[0] == "No call to weigh: no slice of the scan was scored with a lung field in it."
    assert all(c.covid is None and math.isnan(c.statistic) for c in trust.shares)


def test_a_series_scored_with_the_flag_carries_its_columns(synthetic_run, tmp_path):
    """score_volume with the run's flag (flag_columns) assesses every slice as the flag assesses it alone."""
    from core.data.series import read_series
    from core.inference import TrainedRun
    from core.knowledge.scan import score_volume
    from core.runs.runfolder import RunFolder
    from core.trust.image_check import measure
    from core.trust.ood import fit_run
    from tests.dicom_series import write_series
    from tests.phantom_series import dicom_series, right_lung_lesions

    tr = TrainedRun.load(synthetic_run)
    flag = fit_run(RunFolder(synthetic_run))
    write_series(tmp_path, dicom_series(right_lung_lesions(3, size=96, seed=1)))
    vol = read_series(tmp_path).volumes[0]
    t = score_volume(tr, vol, extra=flag_columns(flag))
    assert set(COLUMNS) <= set(t.columns)
    alone = flag.assess(tr.fusion_vector(tr.analyse(vol.image(1)))[None], [measure(vol.image(1))]).iloc[0]
    assert t.at[1, "ood_network"] == pytest.approx(alone["ood_network"]) and t.at[1, FLAG_COLUMN] == alone[FLAG_COLUMN]
    assert FLAG_COLUMN not in score_volume(tr, vol)  # without the flag, no column

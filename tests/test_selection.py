"""Which two-step decision a run keeps (core.knowledge.selection): scored on the data that choose, by one rule."""
import numpy as np
import pandas as pd
import pytest

from core.knowledge import selection as sel
from core.knowledge.selection import CANDIDATES, Candidate, Scored, select, table_text


def rows(rng, n=60, strong="global", weak="fusion"):
    """External-shaped rows of the three sources that choose: the `strong` branch separates every comparison,
    the `weak` one barely; the lesion share marks disease (COVID-19 and pneumonia) against normal lungs."""
    parts = []
    for source, group, diagnosis, label, visible in (("covid-ct", "val", "COVID-19", 1, np.nan),
                                                     ("covid-ct", "val", "non-COVID", 0, np.nan),
                                                     ("semiseg", "train", "COVID-19", 1, np.nan),
                                                     ("covid-ct-md", "P001", "COVID-19", 1, 1.0),
                                                     ("covid-ct-md", "normal001", "Normal", 0, np.nan),
                                                     ("covid-ct-md", "cap001", "CAP", 0, np.nan)):
        diseased = diagnosis != "Normal"
        parts.append(pd.DataFrame({
            "source": source, "group": group, "diagnosis": diagnosis, "label": label, "infection_visible": visible,
            "role": "chooses",
            f"p_{strong}": np.clip(0.5 + 0.35 * (2 * label - 1) + rng.normal(0, 0.1, n), 0.01, 0.99),
            f"p_{weak}": np.clip(0.5 + 0.05 * (2 * label - 1) + rng.normal(0, 0.2, n), 0.01, 0.99),
            "lesion_share": rng.uniform(0.05, 0.3, n) if diseased else rng.uniform(0.0, 0.01, n),
            "peripheral_share": rng.uniform(0, 1, n), "bilateral": rng.integers(0, 2, n).astype(float),
            "lesion_count": rng.integers(0, 5, n), "consolidation_share": rng.uniform(0, 1, n)}))
    return pd.concat(parts, ignore_index=True)


def masks(t):
    covid_ct = (t.source == "covid-ct")
    infected = (t.group == "P001") & (t.infection_visible == 1)
    return {"covid-ct val": (covid_ct & (t.label == 1), covid_ct & (t.label == 0)),
            "semiseg train": (t.source == "semiseg", None),
            "covid-ct-md P001 infected vs normal001": (infected, t.group == "normal001"),
            "covid-ct-md P001 infected vs cap001": (infected, t.group == "cap001")}


def test_the_branch_that_separates_the_data_that_choose_feeds_the_second_step():
    t = rows(np.random.default_rng(0))
    decision, table = select(t, masks(t), [c for c in CANDIDATES if c.pattern_branch in ("fusion", "global")])
    assert decision.pattern_branch == "global"
    chosen = table[table.chosen]
    assert len(chosen) == 1 and chosen.name.iloc[0] == Candidate("global", tuple(decision.signs)).name
    assert chosen.operating_point.iloc[0] == pytest.approx(decision.operating_point)
    # every branch alone and the lesion share alone stand beside the candidates, never chosen
    refs = table[table.kind == "reference"]
    assert set(refs.name) == {"fusion alone", "global alone", "lesion-share alone"} and not refs.chosen.any()
    two_step = dict(zip(table.name, table.score))
    assert two_step[chosen.name.iloc[0]] == table[table.eligible & (table.kind == "candidate")].score.max()
    # the three two-class comparisons that choose make the score; the all-COVID set gives a sensitivity
    assert set(chosen.aucs.iloc[0]) == {"covid-ct val", "covid-ct-md P001 infected vs normal001",
                                        "covid-ct-md P001 infected vs cap001"}
    assert chosen.score.iloc[0] == pytest.approx(np.mean(list(chosen.aucs.iloc[0].values())))
    assert set(chosen.sensitivities.iloc[0]) == {"semiseg train"}
    text = table_text(table.to_dict("records"))
    assert list(text[""]).count("chosen") == 1 and "AUC covid-ct val" in text
    # read back from strict JSON (external.json: NaN stored as null), an unmeasured score prints blank
    stored = [{**r, "score": None} if r["kind"] == "reference" else r for r in table.to_dict("records")]
    assert set(table_text(stored)[text[""] == "reference"]["score (mean AUC)"]) == {""}


def test_a_candidate_missing_its_branch_is_skipped_and_none_at_all_is_an_error():
    t = rows(np.random.default_rng(1))
    decision, table = select(t, masks(t), [Candidate("heatmap"), Candidate("global")])
    assert decision.pattern_branch == "global" and "two-step over heatmap" not in set(table.name)
    with pytest.raises(ValueError, match="p_heatmap"):
        select(t, masks(t), [Candidate("heatmap")])


def scored(score, sensitivity=0.95, under=0.0):
    fails = ((sel.MISSES_COVID,) if sensitivity < sel.SENSITIVITY_FLOOR else ()) + (
        (sel.UNDER_LESION_SHARE,) if under > sel.LESION_MARGIN else ())
    return Scored("x", "candidate", score, {}, {"semiseg train": sensitivity}, 0.5, not fails, under, fails)


NORMAL = "covid-ct-md P001 infected vs normal001"


def test_against_normal_lungs_no_candidate_falls_far_under_the_lesion_share():
    """With the comparison against normal lungs named, every row's shortfall is the lesion share's AUC there less
    its own, and a shortfall over LESION_MARGIN makes a candidate ineligible; unnamed, nothing is measured."""
    t = rows(np.random.default_rng(2))
    cands = [c for c in CANDIDATES if c.pattern_branch in ("fusion", "global")]
    _, table = select(t, masks(t), cands, normal=(NORMAL,))
    lesion = table[table.name == "lesion-share alone"].aucs.iloc[0][NORMAL]
    for r in table.to_dict("records"):
        assert r["under_lesion_share"] == pytest.approx(lesion - r["aucs"][NORMAL])
        assert r["eligible"] == (r["sensitivities"]["semiseg train"] >= sel.SENSITIVITY_FLOOR
                                 and r["under_lesion_share"] <= sel.LESION_MARGIN + 1e-12)
        assert (sel.UNDER_LESION_SHARE in r["fails"]) == (r["under_lesion_share"] > sel.LESION_MARGIN + 1e-12)
    _, table = select(t, masks(t), cands)
    assert table.under_lesion_share.isna().all() and not any(sel.UNDER_LESION_SHARE in f for f in table.fails)
    # _measure itself: AUC 0.5 against normal lungs where the lesion share reaches 1.0
    m = masks(t)
    p = np.where(m[NORMAL][0] | m[NORMAL][1], 0.5, t.p_global)
    low = sel._measure("x", "candidate", p, 0.5, {k: (np.asarray(a), None if b is None else np.asarray(b))
                                                    for k, (a, b) in m.items()}, {NORMAL: 1.0})
    assert low.fails == (sel.UNDER_LESION_SHARE,) and not low.eligible and low.under_lesion_share == pytest.approx(0.5)


def test_the_table_names_what_a_candidate_fails():
    records = [{**scored(0.9, 0.85, 0.05).row(), "name": "a"}, {**scored(0.8).row(), "name": "b", "chosen": True}]
    old = {k: v for k, v in scored(0.7, 0.85).row().items() if k not in ("fails", "under_lesion_share")}
    text = table_text(records + [{**old, "name": "stored before the lesion-share condition"}])
    assert list(text[""]) == [f"{sel.MISSES_COVID}, {sel.UNDER_LESION_SHARE}", "chosen", sel.MISSES_COVID]
    assert list(text["under lesion share"]) == ["0.050", "0.000", ""]


def test_the_rule_keeps_the_best_eligible_score_and_gives_a_tie_to_the_simpler():
    plain, signs = Candidate("global"), Candidate("fusion", sel.PATTERN_SIGNS)
    # a higher score that misses COVID-19 slices of another source is not kept
    assert sel._best([(plain, scored(0.80)), (signs, scored(0.95, sensitivity=0.85))]) == 0
    # within TIE the candidate reading fewer inputs wins, though it comes later and scores lower
    assert sel._best([(signs, scored(0.900)), (plain, scored(0.900 - sel.TIE / 2))]) == 1
    assert sel._best([(signs, scored(0.900)), (plain, scored(0.900 - 2 * sel.TIE))]) == 0
    # equally simple and tied: the earlier one (CANDIDATES puts fusion first)
    assert sel._best([(Candidate("fusion"), scored(0.899)), (plain, scored(0.900))]) == 0
    assert CANDIDATES[0] == Candidate("fusion")
    # none eligible: the highest sensitivity
    assert sel._best([(plain, scored(0.95, 0.80)), (signs, scored(0.70, 0.85))]) == 1
    # far under the lesion share against normal lungs: not kept, whatever its score
    assert sel._best([(signs, scored(0.95, under=sel.LESION_MARGIN + 0.01)), (plain, scored(0.80))]) == 1
    # none eligible: the one failing fewer conditions first
    assert sel._best([(plain, scored(0.95, 0.80, under=0.05)), (signs, scored(0.70, 0.85))]) == 1


def test_a_stored_table_names_the_rule_it_was_chosen_by():
    assert sel.rule_of({"selection": [], "selection_rule": sel.RULE}) == sel.RULE
    # a table stored before the rule was kept beside it does not borrow today's rule
    old = sel.rule_of({"selection": []})
    assert old != sel.RULE and "not recorded" in old

"""Map sanity checks (core.trust): the Quantus wrappers, the baselines, each metric's output, the verdict rules,
`train trust`'s cache and its report section."""
import json

import numpy as np
import pytest
import torch

from core.models.backbones import build_backbone
from core.models.classifier import SliceClassifier
from core.trust import quantus_checks as qc
from core.trust.baselines import BASELINES, TIE_BREAK, edge_map, is_flat
from core.trust.map_checks import METRICS, MapChecks, MapSettings
from core.trust.models import BranchModel, backbone_blocks
from core.trust.verdicts import (
    CHANGED_BELOW,
    FAITHFUL_MARGIN,
    LOCALISES_MARGIN,
    STABLE_AT_MOST,
    TESTS,
    passes_every_test,
    sentences,
    verdicts,
)
from train.__main__ import main

SIDE = 64


@pytest.fixture(scope="module")
def branch() -> BranchModel:
    torch.manual_seed(0)
    return BranchModel(SliceClassifier(build_backbone("efficientnet_lite0", "scratch")).eval(), SIDE)


@pytest.fixture(scope="module")
def slice_x() -> np.ndarray:
    from core.data.phantom import make_phantom

    return make_phantom(3, covid=True, size=SIDE).image[None, None].astype(np.float32)


@pytest.fixture
def quick(monkeypatch):
    """Fewer perturbation steps and noisy copies: the same code, less CPU."""
    monkeypatch.setattr(qc, "REGIONS", 3)
    monkeypatch.setattr(qc, "SENSITIVITY_SAMPLES", 2)


# ---- the wrappers Quantus sees ------------------------------------------------------------------
def test_quantus_sees_one_unit_per_block_top_down(branch):
    names = [n for n, _ in backbone_blocks(branch.classifier.backbone)]
    assert names[:2] == ["_conv_stem", "_bn0"] and names[-2:] == ["_conv_head", "_bn1"]
    assert [f"_blocks.{i}" for i in range(16)] == names[2:-2]  # the unused ImageNet classifier is left out
    top_down = branch.unit_names()
    assert top_down[0] == "fc" and top_down[-1] == "_conv_stem" and len(top_down) == len(names) + 1
    from quantus.helpers.model.pytorch_model import PyTorchModel

    assert PyTorchModel(branch).random_layer_generator_length == len(top_down)


def test_two_class_scores_give_the_branch_probability(branch, slice_x):
    x = torch.from_numpy(slice_x)
    with torch.no_grad():
        p, logit = torch.softmax(branch(x), 1)[0, 1], branch.classifier({"image": x})[0]
    assert float(p) == pytest.approx(float(torch.sigmoid(logit)), abs=1e-6)


def test_randomising_changes_a_cam_and_leaves_the_trained_model_alone(branch, slice_x):
    before = {k: v.clone() for k, v in branch.classifier.state_dict().items()}
    edge = qc.randomisation(branch, slice_x, branch.explain(slice_x, "edge", 0), "edge", 0)
    assert list(edge) == [u.replace(":", ".") for u in branch.unit_names()]
    assert all(v[0] == pytest.approx(1.0, abs=1e-6) for v in edge.values())  # knows no model: never changes
    for method in ("cam", "gradcam", "eq1"):
        sims = qc.randomisation(branch, slice_x, branch.explain(slice_x, method, 0), method, 0)
        assert list(sims) == list(edge)
        assert all(-1 - 1e-9 <= v[0] <= 1 + 1e-9 for v in sims.values()), method
        assert sims["_conv_stem"][0] < 0.99, f"{method}: the map of a fully randomised model did not change"
    assert sims["fc"][0] == pytest.approx(1.0, abs=1e-6)  # Eq. 1 reads no FC weight
    after = branch.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- baselines ------------------------------------------------------------------------------------
def test_edge_baseline_is_the_sobel_of_the_slice(branch, slice_x):
    step = np.zeros((16, 16), np.float32)
    step[:, 8:] = 1
    e = edge_map(step)
    assert e.max() == 1.0 and set(np.nonzero(e.max(0))[0]) == {7, 8} and not edge_map(np.ones((4, 4))).any()
    ours = branch.explain(slice_x, "edge", 5)[0, 0]
    assert np.abs(ours - edge_map(slice_x[0, 0])).max() < 2 * TIE_BREAK  # tie-break, float32 rounding
    other = branch.explain(np.ascontiguousarray(slice_x[..., ::-1]), "edge", 5)[0, 0]
    assert np.abs(other - edge_map(slice_x[0, 0, :, ::-1])).max() < 2 * TIE_BREAK  # tie-break, float32 rounding
    assert np.abs(other - ours).max() > 0.1


def test_random_and_uniform_baselines_are_fixed_per_slice_and_know_no_model(branch, slice_x):
    for name in ("random", "uniform"):
        a, b = branch.explain(slice_x, name, 3), branch.explain(slice_x + 0.1, name, 3)
        assert np.array_equal(a, b) and not np.array_equal(a, branch.explain(slice_x, name, 4)), name
        assert a.min() >= 0 and a.max() <= 1 + TIE_BREAK
    assert is_flat(branch.explain(slice_x, "uniform", 3)) and not is_flat(branch.explain(slice_x, "random", 3))
    with pytest.raises(ValueError, match="draws no map"):
        branch.explain(slice_x, "fusion-cam", 0)


# ---- each metric's output -----------------------------------------------------------------------------
def test_faithfulness_sensitivity_and_localisation_shapes_and_ranges(branch, slice_x, quick):
    a = branch.explain(slice_x, "gradcam", 1)
    f = qc.faithfulness(branch, slice_x, a, "gradcam", 1)
    assert f["morf_curve"].shape == f["lerf_curve"].shape == (1, 3)
    assert np.abs(f["morf_curve"]).max() <= 1 and f["faithfulness"][0] == pytest.approx(f["morf"][0] - f["lerf"][0])
    s = qc.max_sensitivity(branch, slice_x, a, "gradcam", 1)
    assert s.shape == (1,) and s[0] >= 0
    assert qc.max_sensitivity(branch, slice_x, branch.explain(slice_x, "random", 1), "random", 1)[0] < 1e-3
    mask = np.zeros((1, SIDE, SIDE), bool)
    mask[0, 10:20, 10:20] = True
    inside = np.zeros((1, SIDE, SIDE), np.float32)
    inside[0, 12:18, 12:18] = 1
    loc = qc.localisation(inside + np.random.default_rng(0).random(inside.shape) * 1e-6, mask, 15)
    assert set(loc) == set(qc.LOCALISATION)
    assert loc["pointing_game"][0] == 1 and loc["relevance_mass"][0] == pytest.approx(1, abs=1e-3)
    assert loc["auc"][0] > 0.6 and loc["pointing_game_tolerance"][0] == 1
    with pytest.raises(ValueError, match="lesion"):
        qc.localisation(inside, np.zeros_like(mask), 15)


def test_map_checks_rows_on_the_synthetic_run(synthetic_run, quick):
    from core.data.semiseg import read_labelled
    from core.inference import TrainedRun

    tr = TrainedRun.load(synthetic_run)
    out = MapChecks(tr, MapSettings(methods=("eq1", "gradcam"), slices=1)).run(
        read_labelled(tr.run.config["data_root"], "test"), progress=False)
    assert out["n_slices"] == 1
    pairs = {(r["branch"], r["method"]) for r in out["rows"]}
    assert pairs == ({("global", m) for m in ("eq1", "gradcam", *BASELINES)}
                     | {("fusion", m) for m in ("fusion-cam", *BASELINES)})
    bounded = {"randomisation": (-1, 1), "randomisation_last": (-1, 1), "faithfulness": (-2, 2), "morf": (-1, 1),
               "lerf": (-1, 1), "max_sensitivity": (0, np.inf), "flat": (0, 1),
               **{k: (0, 1) for k in qc.LOCALISATION}}
    for r in out["rows"]:
        assert r["metric"] in METRICS and r["n"] == 1, r
        lo, hi = bounded[r["metric"]]
        assert lo - 1e-9 <= r["mean"] <= hi + 1e-9, r
        if r["kind"] == "baseline" and r["metric"].startswith("randomisation"):
            assert r["mean"] == pytest.approx(1.0, abs=1e-6), r
        if r["metric"] == "flat" and r["method"] in ("uniform", "edge"):
            assert r["mean"] == (r["method"] == "uniform"), r  # a flat map shows nothing; the edge map does
    units = out["randomisation_units"]["fusion/fusion-cam"]
    assert next(iter(units)) == "fusion.fc" and list(units)[-1] == "_conv_stem"
    assert len(out["perturbation_curves"]["global/gradcam"]["morf"]) == 3
    # the fusion wrapper re-runs the pipeline: on the intact slice it gives analyse()'s probability
    assert 0 <= out["mean_prob"]["fusion"] <= 1


# ---- verdicts ---------------------------------------------------------------------------------------------
def _rows(values: dict) -> list[dict]:
    return [{"branch": "global", "method": m, "kind": "", "metric": k, "n": 8, "mean": v, "std": None}
            for (m, k), v in values.items()]


def _made_up(rand, faith, sens, auc) -> list[dict]:
    base = {("random", "faithfulness"): 0.04, ("edge", "faithfulness"): 0.06, ("uniform", "auc"): 0.5,
            ("random", "auc"): 0.55, ("edge", "auc"): 0.62}
    return _rows({**base, ("gradcam", "randomisation"): rand, ("gradcam", "faithfulness"): faith,
                  ("gradcam", "max_sensitivity"): sens, ("gradcam", "auc"): auc})


def test_verdicts_follow_each_rule_on_either_side_of_its_threshold():
    eps = 1e-3
    good = _made_up(CHANGED_BELOW - eps, 0.06 + FAITHFUL_MARGIN + eps, STABLE_AT_MOST, 0.62 + LOCALISES_MARGIN + eps)
    bad = _made_up(CHANGED_BELOW + eps, 0.06 + FAITHFUL_MARGIN - eps, STABLE_AT_MOST + eps,
                   0.62 + LOCALISES_MARGIN - eps)
    ok = {v.test: v for v in verdicts(good, "global", "gradcam")}
    no = {v.test: v for v in verdicts(bad, "global", "gradcam")}
    assert list(ok) == list(TESTS) and all(v.passed for v in ok.values())
    assert all(v.passed is False for v in no.values())
    assert passes_every_test(good, "global", "gradcam") and not passes_every_test(bad, "global", "gradcam")
    assert ok["faithfulness"].reference == "edge" and ok["localisation"].reference == "edge"
    said = sentences(good, "global", "gradcam")
    assert said[0].startswith("Grad-CAM changes when the model's weights are randomised (rank correlation 0.50)")
    assert "beats the edge map on region perturbation by 0.02" in said[1]
    assert "stays stable" in said[2] and "better than the edge map (AUC 0.67 against 0.62)" in said[3]
    said = sentences(bad, "global", "gradcam")
    assert "does not change" in said[0] and "do not read it as the model's reasoning" in said[0]
    assert "does not beat the edge map" in said[1] and "redraws it" in said[2] and "no better than" in said[3]


def test_a_baseline_is_judged_against_the_other_baselines_and_missing_tests_do_not_pass():
    rows = _made_up(0.1, 0.2, 0.1, 0.9) + _rows({("edge", "randomisation"): 1.0, ("edge", "max_sensitivity"): 0.1})
    edge = {v.test: v for v in verdicts(rows, "global", "edge")}
    assert edge["randomisation"].passed is False and edge["localisation"].reference == "random"
    assert edge["localisation"].passed is True  # the edge map localises: passing one test says little
    assert not passes_every_test(rows, "global", "edge")
    partial = [r for r in _made_up(0.1, 0.2, 0.1, 0.9) if r["metric"] != "max_sensitivity"]
    v = {v.test: v for v in verdicts(partial, "global", "gradcam")}
    assert v["robustness"].passed is None and "not measured" in v["robustness"].sentence
    assert not passes_every_test(partial, "global", "gradcam")
    assert not passes_every_test(partial, "global", "no-such-method")


# ---- the command: cache, table, report ------------------------------------------------------------------
def test_trust_command_caches_each_part_and_rebuilds_when_stale(synthetic_run, quick, monkeypatch, capsys):
    from core.trust import map_checks

    argv = ["trust", "--run", str(synthetic_run), "--slices", "1", "--methods", "eq1", "--no-progress"]
    assert main([*argv, "--parts", "maps,sets"]) == 0
    printed = capsys.readouterr().out
    assert "| global | eq1 |" in printed and "| fusion | fusion-cam |" in printed and "Prediction sets" in printed
    saved = json.loads((synthetic_run / "trust.json").read_text())
    assert set(saved) == {"maps", "sets"} and saved["maps"]["n_slices"] == 1
    table = (synthetic_run / "trust.csv").read_text().splitlines()
    assert table[0] == "branch,method,kind,metric,n,mean,std"
    assert len(table) - 1 == len(saved["maps"]["rows"]) == 8 * len(METRICS)

    calls = []
    # what is measured is the test above's subject; here, whether it is measured: a stale part is measured again
    measured = {k: v for k, v in saved["maps"].items() if k not in ("key", "key_parts")}
    monkeypatch.setattr(map_checks.MapChecks, "run", lambda self, *a, **k: calls.append(1) or measured)
    before = (synthetic_run / "trust.json").stat().st_mtime_ns
    assert main([*argv, "--parts", "maps"]) == 0
    assert calls == [] and (synthetic_run / "trust.json").stat().st_mtime_ns == before  # read, not measured
    assert "| global | eq1 |" in capsys.readouterr().out
    assert main([*argv, "--parts", "maps", "--seed", "1"]) == 0  # other settings: measured again
    assert calls == [1]
    again = json.loads((synthetic_run / "trust.json").read_text())
    assert again["maps"]["key"] != saved["maps"]["key"] and again["sets"] == saved["sets"]  # the other part kept
    capsys.readouterr()

    rc = main(["report", str(synthetic_run), "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert rc == 0 and "### Trust (`trust.json`" in out and "| global | eq1 |" in out

    from core.trust import conformal

    measured_sets = []
    real_sets = conformal.run_sets
    monkeypatch.setattr(conformal, "run_sets", lambda *a, **k: measured_sets.append(1) or real_sets(*a, **k))
    (synthetic_run / "trust.json").write_text("{torn")
    assert main([*argv, "--parts", "sets"]) == 0  # unreadable: rebuilt, never trusted (sets: the cheap part)
    assert measured_sets == [1] and set(json.loads((synthetic_run / "trust.json").read_text())) == {"sets"}


def test_trust_command_bad_inputs_exit_2(tmp_path, synthetic_run, capsys):
    assert main(["trust", "--run", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text(json.dumps({"data_root": str(tmp_path)}))
    assert main(["trust", "--run", str(untrained)]) == 2
    assert "no pipeline configuration" in capsys.readouterr().err
    assert main(["trust", "--run", str(synthetic_run), "--parts", "maps", "--data-root", str(tmp_path / "no")]) == 2
    assert "not found" in capsys.readouterr().err
    for bad in (["--parts", "maps,nope"], ["--methods", "eq1,nope"], ["--level", "1.5"], ["--slices", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["trust", "--run", str(synthetic_run), *bad])
        assert exc.value.code == 2
        assert bad[1].split(",")[-1] in capsys.readouterr().err


def test_a_pickers_label_names_the_failed_tests_only():
    from core.trust.verdicts import failed, label

    eps = 1e-3
    bad = _made_up(CHANGED_BELOW + eps, 0.5, STABLE_AT_MOST + eps, 0.9)
    assert failed(bad, "global", "gradcam") == ["randomisation", "robustness"]
    assert label(bad, "global", "gradcam") == "Grad-CAM ⚠ fails randomisation, robustness"
    assert label(_made_up(0.1, 0.5, 0.1, 0.9), "global", "gradcam") == "Grad-CAM"
    partial = [r for r in bad if r["metric"] != "randomisation"]  # not measured: not called a failure
    assert label(partial, "global", "gradcam") == "Grad-CAM ⚠ fails robustness"
    assert label(None, "global", "eq1") == "The Eq. 1 map"  # no maps part yet: the name alone

"""RunView's public reads the dashboard uses (feature order, range check, nearest slices, stored metrics,
timings and stage tables) and core.results.tables' strategy comparison, on small run folders written here:
no training, no Streamlit. Expected values are worked by hand."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import PipelineConfig
from core.results.metrics import METRICS
from core.results.tables import configured_strategies, sibling_strategies, strategy_comparison
from core.runs import feature_cache as fc
from core.runs.run_view import RunView

# Feature caches keep the data set's order; predictions.csv may list the slices in another.
CACHE_KEYS = ["a", "b", "c", "d", "e"]
SPLITS = {"a": "train", "b": "train", "c": "val", "d": "val", "e": "test"}
# Standardised fusion inputs: the training rows' largest |value| is 2.5 (row b); row c (val) holds 9.
X = np.array([[1.0, -2.0], [2.5, 0.0], [9.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], np.float32)


def write_run(path, pipeline=None, fusion=True, **config):
    """A run folder with the configuration PipelineConfig(**pipeline) (as a trained run records it)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"pipeline": asdict(PipelineConfig(**(pipeline or {}))), **config}))
    rows = [("e", "test", 1, 0.9, 0.7), ("a", "train", 0, 0.2, 0.1), ("c", "val", 0, 0.3, 0.2),
            ("b", "train", 1, 0.6, 0.8), ("d", "val", 1, 0.7, 0.9)]
    pd.DataFrame(rows, columns=["key", "split", "label", "p_global", "p_fusion"]).assign(patient="p") \
        .to_csv(path / "predictions.csv", index=False)
    if fusion:
        parts = {"test": 1}
        fc.save_cached(path / "features", "fusion", parts, {"keys": CACHE_KEYS, "standardised": torch.from_numpy(X),
                                                             "vectors": {}})
        fc.remember(path / "features", "fusion", parts)
    return path


@pytest.fixture
def run(tmp_path):
    write_run(tmp_path / "runs" / "r", timings={"global": 12.5, "fusion": 3, "total": 15.5})
    return RunView(tmp_path / "runs", "r")


def test_feature_order_and_inputs(run):
    assert run.feature_keys == CACHE_KEYS  # the caches' order, not predictions.csv's
    assert run.fusion_input("c").tolist() == [9.0, 0.0]
    with pytest.raises(ValueError):
        run.fusion_input("nope")


def test_out_of_range_compares_with_the_training_split_only(run):
    assert run.out_of_range(np.array([0.5, -7.0])) == (7.0, 2.5)  # not 9: row c is a val slice


def test_out_of_range_without_a_training_split(tmp_path):
    rv = RunView(write_run(tmp_path / "runs" / "r").parent, "r")
    rv.predictions["split"] = "test"  # every slice outside the training split: the reference is all rows
    assert rv.out_of_range(np.array([1.0, 0.0])) == (1.0, 9.0)


def test_nearest_keys_of_a_new_vector(run):
    near = run.nearest_keys(np.array([0.0, 0.0]), 3)
    # distances from the origin: d 1, e sqrt(2) = 1.41, a sqrt(5) = 2.24, b 2.5, c 9
    assert [k for k, _ in near] == ["d", "e", "a"]
    assert [d for _, d in near] == pytest.approx([1.0, np.sqrt(2), np.sqrt(5)])


def test_timings_table_leaves_out_the_total(run):
    t = run.timings_table()
    assert t.to_dict("records") == [{"stage": "global", "seconds": 12.5}, {"stage": "fusion", "seconds": 3.0}]
    rv = RunView(write_run(run.run.path.parent / "bare").parent, "bare")
    assert rv.timings_table().empty


def test_stage_table_in_pipeline_order(run):
    for stage, summary in (("fusion", {"best_epoch": 2, "epochs_run": 4, "best_val_auc": 0.8, "recipe": "plain"}),
                           ("global", {"best_epoch": 3, "epochs_run": 5, "best_val_auc": 0.9,
                                       "recipe": {"name": "guided", "lr": 1e-3}})):
        (run.run.path / stage).mkdir()
        (run.run.path / stage / "summary.json").write_text(json.dumps(summary))
    t = run.stage_table()
    assert list(t.stage) == ["global", "fusion"]
    assert list(t.recipe) == ["guided", "plain"]
    assert list(t["best epoch"]) == [3, 2] and list(t["epochs run"]) == [5, 4]
    assert list(t["best val AUC"]) == [0.9, 0.8]


def test_stored_metrics_only_when_fresh_and_complete(run):
    f = run.run.path / "metrics_test.json"
    assert run.stored_metrics("test") is None  # not evaluated
    entry = {k: {"value": 0.5, "ci": [0.1, 0.9]} for k in METRICS} | {"n": 1}
    f.write_text(json.dumps({"global": entry, "fusion": entry, "heatmap": entry}))
    got = run.stored_metrics("test")
    assert list(got) == ["global", "fusion"]  # the run's branches only
    t = run.run.predictions_csv.stat().st_mtime_ns
    os.utime(f, ns=(t - 10**9, t - 10**9))  # written before the predictions: stale
    assert run.stored_metrics("test") is None
    f.write_text(json.dumps({"global": entry, "fusion": {"auc": entry["auc"]}}))  # a metric missing
    assert run.stored_metrics("test") is None
    f.write_text("{not json")
    assert run.stored_metrics("test") is None


def test_configured_strategies():
    assert configured_strategies({}) is None
    assert configured_strategies({"strategy_comparison": []}) is None
    t = configured_strategies({"strategy_comparison": {"GHIF": {"auc": 0.9}, "GHI-F": 0.8}})
    assert list(t.strategy) == ["GHIF", "GHI-F"]  # a bare number becomes column `value`
    assert t.auc.iloc[0] == 0.9 and np.isnan(t.auc.iloc[1]) and t.value.iloc[1] == 0.8 and np.isnan(t.value.iloc[0])
    rows = [{"strategy": "GHIF", "auc": 0.9}]
    assert configured_strategies({"strategy_comparison": rows}).to_dict("records") == rows


def test_strategy_comparison_from_runs_beside(tmp_path):
    runs = tmp_path / "runs"
    same = {"backbone": "resnet18", "init": "imagenet"}
    write_run(runs / "me", {**same, "strategy": "G-H-I-F"}, fusion=False)
    write_run(runs / "one", {**same, "strategy": "GHIF"}, fusion=False)
    write_run(runs / "other-backbone", {"backbone": "densenet121", "init": "imagenet", "strategy": "GHI-F"}, fusion=False)
    others = ["me", "one", "other-backbone", "../escape", "missing"]  # the last two are left out, not fatal
    table = sibling_strategies(runs, "me", others)
    # Table 3's order (GHIF first); GHI-F only in a run of another backbone
    assert list(table.strategy) == ["GHIF", "G-H-I-F"] and list(table.seeds) == [1, 1]
    # fusion on the single test slice (label 1, p 0.7) at the operating point chosen on val (0.2 -> 0, 0.9 -> 1:
    # Youden's cut 0.9) calls it non-COVID; at 0.5 it would have been right
    assert list(table.accuracy) == ["0.000", "0.000"]
    got, source = strategy_comparison(runs, "me", others)
    assert got.equals(table) and source == "runs under runs/ with the same backbone and init"
    assert sibling_strategies(runs, "me", ["me", "other-backbone"]) is None  # one strategy: nothing to compare


def test_strategy_comparison_sources_in_order(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "me", {"strategy": "GHIF"}, fusion=False)
    assert strategy_comparison(runs, "me", ["me"]) is None
    (tmp_path / "table3.csv").write_text("strategy,auc\nGHIF,0.9\n")
    table, source = strategy_comparison(runs, "me", ["me"])
    assert table.to_dict("records") == [{"strategy": "GHIF", "auc": 0.9}] and "table3.csv" in source
    cfg = json.loads((runs / "me" / "config.json").read_text())
    (runs / "me" / "config.json").write_text(json.dumps({**cfg, "strategy_comparison": [{"strategy": "GHI-F"}]}))
    table, source = strategy_comparison(runs, "me", ["me"])
    assert list(table.strategy) == ["GHI-F"] and source == "the run's configuration"

"""`python -m train reproduce`: tables from every configuration, resumable, the paper's numbers beside."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests import phantom_sizes

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # two seeds of a whole pipeline, in a subprocess


def test_reproduce_writes_tables_and_reuses_finished_runs(phantom_root, tmp_path):
    args = [sys.executable, "-m", "train", "reproduce", "--data-root", str(phantom_root), "--seeds", "2",
            "--epochs", "1", "--strategies", "G-H-I-F", *phantom_sizes.ARGS,
            "--seg-epochs", "1", "--seg-max-rounds", "0", "--out", str(tmp_path / "repro"), "--no-progress",
            # the tables read neither (the stages after training: test_after_training)
            "--no-audits", "--no-precompute"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    t12 = pd.read_csv(tmp_path / "repro" / "table1_2.csv")
    assert list(t12.branch) == ["global", "global+infected", "global+heatmap", "fusion"]
    assert (t12.seeds == 2).all() and t12.auc.str.contains("±").all()
    paper = dict(zip(t12.branch, t12["paper acc/F1/AUC"]))  # from assets/paper_results.csv
    assert paper["global"] == "0.83/0.81/0.87 (densenet169)" and paper["fusion"] == "0.87/0.84/0.92 (densenet169)"
    assert paper["global+heatmap"] == "—"
    assert (tmp_path / "repro" / "table1_2.md").read_text().startswith("synthetic phantoms")
    assert list(pd.read_csv(tmp_path / "repro" / "table3.csv").strategy) == ["G-H-I-F"]
    # the second seed reused the first seed's segmenter instead of training another
    assert "infnet: reusing" in (tmp_path / "repro" / "runs" / "efficientnet_lite0-imagenet-G-H-I-F-s1" / "log.txt").read_text()
    config_before = (tmp_path / "repro" / "runs" / "efficientnet_lite0-imagenet-G-H-I-F-s0" / "config.json").read_text()
    saved = json.loads(config_before)
    assert saved["pipeline"]["precompute"] is False and "precompute" not in saved["timings"]  # --no-precompute reached it
    assert saved["pipeline"]["lesion_size"] == phantom_sizes.SIZES["lesion_size"]  # so did --lesion-size
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert again.stdout.count("finished earlier: read as it is") == 2  # no Pipeline, not even to reuse stages
    assert (tmp_path / "repro" / "runs" / "efficientnet_lite0-imagenet-G-H-I-F-s0" / "config.json").read_text() == config_before
    runs = pd.read_csv(tmp_path / "repro" / "all_runs.csv")
    assert runs.run.str.endswith("-s0").sum() == runs.run.str.endswith("-s1").sum() > 0
    assert (runs.epochs == 1).all()
    # --collect: tables from what has finished, nothing trained; a third seed is simply left out
    collect = subprocess.run([*args[:args.index("--seeds") + 1], "3", *args[args.index("--seeds") + 2:], "--collect"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert collect.returncode == 0, collect.stderr[-2000:]
    assert "not finished: left out of the tables (--collect)" in collect.stdout
    assert not (tmp_path / "repro" / "runs" / "efficientnet_lite0-imagenet-G-H-I-F-s2").exists()
    assert (pd.read_csv(tmp_path / "repro" / "table1_2.csv").seeds == 2).all()
    log = (tmp_path / "repro" / "runs" / "efficientnet_lite0-imagenet-G-H-I-F-s0" / "log.txt").read_text()
    assert log.count("global: training") == 1  # finished stages are reused, not retrained

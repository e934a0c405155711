"""The device scripts a lent GPU machine runs, as CPU dry runs on a pack of the phantoms:
bench/gpu_compare.sh (recipes x seeds, each audited and probed, one report) and bench/gpu_smoke.sh
(every stage once). The device tool gives one try; these make sure it is not spent on a typo."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests import phantom_sizes

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # the GPU machine's scripts, each training runs on the CPU


@pytest.fixture(scope="module")
def pack(phantom_root, tmp_path_factory):
    from train.pack import build

    out = tmp_path_factory.mktemp("pack") / "pack"
    build(phantom_root, out, log=lambda m: None)
    return out


def _script(name, tmp_path, pack, **env):
    env = {**os.environ, "PYTHON": sys.executable, "PACK": str(pack), "OUT": str(tmp_path / "out"),
           "WORK": str(tmp_path / "work"), "THREADS": "1", **env}
    return subprocess.run(["bash", f"bench/{name}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_compare_script_trains_audits_probes_and_reports_every_run(pack, tmp_path):
    # the script chains its own shortcut and probe; the pipeline's audit stages are test_after_training's
    res = _script("gpu_compare.sh", tmp_path, pack, RECIPES="guided fast", SEEDS="0", IMAGE_SIZE="64", LIMIT="4",
                  BUDGET_S="900",
                  EXTRA_ARGS=f"--epochs 1 --batch-size 8 --lesion-size {phantom_sizes.SIZES['lesion_size']} "
                             "--seg-size 64 --no-audits --no-precompute",
                  SEG_ARGS="--size 64 --epochs 1 --max-rounds 0 --polish-epochs 0", CHOOSE_ON_TRAIN="1",
                  LOW_PRIORITY="fast")
    out = tmp_path / "out"
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert (out / "console.txt").read_text() == res.stdout
    assert "guided-s0: exit 0" in res.stdout and "fast-s0: exit 0" in res.stdout
    for name, recipe, mode in (("guided-s0", "guided", "lungs"), ("fast-s0", "fast", "slice")):
        run = out / "runs" / name
        for f in ("config.json", "predictions.csv", "shortcut.json", "shortcut.csv", "shortcut-train.json",
                  "branch_probe.csv"):
            assert (run / f).exists(), (name, f)
        cfg = json.loads((run / "config.json").read_text())["pipeline"]
        assert (cfg["recipe"], cfg["input"]) == (recipe, mode)  # each run took its recipe's settings
    report = (out / "report.md").read_text()
    assert "| guided | lungs | semiseg-volumes | fusion | 1 |" in report and "| fast | slice | none | fusion | 1 |" in report
    assert (out / "infnet" / "metrics.json").exists()
    assert not list(out.rglob("*.pt")) and not list(out.rglob("features"))  # checkpoints and caches stay in WORK


def test_compare_script_stops_at_its_budget_and_says_so(pack, tmp_path):
    """A budget the segmenter alone spends: the runs are never started, the script says why and fails."""
    res = _script("gpu_compare.sh", tmp_path, pack, RECIPES="fast", SEEDS="0", IMAGE_SIZE="64", BUDGET_S="3",
                  REPORT_S="1", SEG_ARGS="--size 64 --epochs 1 --max-rounds 0 --polish-epochs 0")
    assert res.returncode != 0
    assert "error: the segmenter failed" in res.stdout or "no run finished its audit" in res.stdout, res.stdout[-2000:]


def test_smoke_script_runs_every_stage_audit_and_probe(pack, tmp_path):
    # the script's own audit and probe; the pipeline's stages after training are test_after_training's
    res = _script("gpu_smoke.sh", tmp_path, pack, RECIPES="fast",
                  EXTRA_ARGS="--no-audits --no-precompute")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "fast: exit 0" in res.stdout and '"device": "cpu"' in res.stdout and "smoke: 0 of 1 runs failed" in res.stdout
    probe = pd.read_csv(tmp_path / "work" / "fast" / "branch_probe.csv")
    assert len(probe) > 0

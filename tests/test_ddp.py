"""DDP: Algorithm 2 under torchrun with two CPU processes (gloo) matches one process.

Two ranks each take half of every batch and average gradients, so the optimisation is the
single-process one up to BatchNorm statistics (per rank) and the augmentation draws. Tolerance:
the global stage's per-epoch training loss within 15% of the single-process run; every branch's
test AUC within the sampling noise of 16 test phantoms (the two runs' 95% bootstrap intervals
overlap: a fixed gap such as 0.25 is narrower than that noise after two epochs); and only rank 0
writes the run folder.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.results.predictions import BRANCHES, DECISIONS, evaluate_run
from core.runs.runfolder import RunFolder
from tests import phantom_sizes

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # two pipelines, one of them under torchrun


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pipeline(phantom_root, out, nproc):
    args = ["-m", "train", "pipeline", "--data-root", str(phantom_root), "--out", str(out), *phantom_sizes.ARGS,
            "--epochs", "2", "--batch-size", "8", "--seed", "1", "--seg-epochs", "2",
            "--seg-steps-per-round", "2", "--seg-max-rounds", "1", "--seg-size", "64", "--no-progress",
            "--device", "cpu",
            # the whole-slice recipe: 2 epochs on lung fields of 16 phantoms are too noisy to compare; what runs
            # after training is rank 0's alone (test_after_training)
            "--recipe", "fast", "--no-audits", "--no-precompute"]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_free_port()}"] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, _each_rank(p.stderr)


def _each_rank(stderr: str) -> str:
    """The end of every rank's own traceback (torchrun prefixes its lines with [rankN]:), then the launcher's."""
    ranks = sorted({line.split("]:", 1)[0] + "]" for line in stderr.splitlines() if line.startswith("[rank")})
    parts = ["\n".join([ln for ln in stderr.splitlines() if ln.startswith(r)][-25:]) for r in ranks]
    return "\n\n".join(parts + [stderr[-1500:]])


def test_two_gloo_processes_match_one(phantom_root, tmp_path):
    _pipeline(phantom_root, tmp_path / "one", 1)
    _pipeline(phantom_root, tmp_path / "two", 2)
    loss = lambda d: [r["train_loss"] for r in json.loads((tmp_path / d / "global" / "summary.json").read_text())["history"]]
    for a, b in zip(loss("one"), loss("two")):
        assert abs(a - b) <= 0.15 * a, (loss("one"), loss("two"))
    one = evaluate_run(RunFolder(tmp_path / "one"), "test", n_boot=200)
    two = evaluate_run(RunFolder(tmp_path / "two"), "test", n_boot=200)
    assert set(one) == set(two) == set(BRANCHES) - set(DECISIONS)  # recipe fast decides by fusion
    for b in one:
        (lo1, hi1), (lo2, hi2) = one[b]["auc"]["ci"], two[b]["auc"]["ci"]
        assert max(lo1, lo2) <= min(hi1, hi2), (b, one[b]["auc"], two[b]["auc"])
    preds = pd.read_csv(tmp_path / "two" / "predictions.csv")
    assert len(preds) == preds["key"].nunique()  # rank 1 wrote no duplicate rows
    assert not list((tmp_path / "two").rglob("*.tmp"))

"""Real data (../shared/data or $COVID_LAB_DATA): readers, the leakage audit, a short training run."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from core.audits.leakage import audit
from core.data.covidct import read_covidct
from core.data.imaging import read_mask
from core.data.semiseg import read_labelled, read_unlabelled

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.realdata


def test_covidct_official_splits(data_root):
    slices = read_covidct(data_root)
    counts = Counter((s.split, s.label) for s in slices)
    assert counts == {("train", 1): 191, ("train", 0): 234, ("val", 1): 60, ("val", 0): 58,
                      ("test", 1): 98, ("test", 0): 105}
    assert len({s.key for s in slices}) == 746
    assert sum(bool(s.patient) for s in slices) > 600  # ids from both metadata files


def test_semiseg_counts(data_root):
    assert len(read_labelled(data_root, "train")) == 50
    test = read_labelled(data_root, "test")
    assert len(test) == 48 and all(s.mask.exists() and s.multiclass is not None for s in test)
    assert len(read_unlabelled(data_root)) == 1600


def test_every_labelled_semiseg_mask_holds_a_lesion(data_root):
    """core.audits.external.disease_comparisons counts every labelled COVID-SemiSeg slice as disease present."""
    for split in ("train", "test"):
        empty = [s.key for s in read_labelled(data_root, split) if not read_mask(s.mask).any()]
        assert not empty, f"labelled {split} slices with an empty lesion mask: {empty}"


def test_audit_finds_the_known_cross_class_near_duplicate(data_root):
    report = audit(read_covidct(data_root))
    pairs = {frozenset((d["a"], d["b"])) for d in report["near_duplicates"]}
    assert frozenset(("CT_COVID/kjr-21-e24-p5-29.png", "CT_NonCOVID/71%0.jpg")) in pairs
    known = next(d for d in report["near_duplicates"] if "CT_NonCOVID/71%0.jpg" in (d["a"], d["b"]))
    assert known["cross_split"] and known["cross_class"]


@pytest.mark.slow  # one epoch on every real slice's lung field, in a subprocess
def test_one_short_real_training_run_predicts_every_slice(data_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    p = subprocess.run([sys.executable, "-m", "train", "global", "--data-root", str(data_root), "--out",
                        str(tmp_path / "r"), "--image-size", "64", "--epochs", "1", "--no-progress",
                        # the harmonised lung fields of every real slice; no lesion loss, so no segmenter to train
                        "--recipe", "harmonised", "--input", "lungs"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    preds = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert len(preds) == 746 and preds["p_global"].between(0, 1).all()
    ev = subprocess.run([sys.executable, "-m", "train", "evaluate", "--run", str(tmp_path / "r"), "--bootstrap", "50"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    report = json.loads(ev.stdout)
    assert "data" not in report and report["global"]["n"] == 203  # a real-data result, not phantoms

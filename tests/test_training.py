"""Global branch training: determinism, exact resume (also after SIGKILL), the CLI's contract."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.data.slices import load_slice_set
from core.models.backbones import build_backbone
from core.models.classifier import SliceClassifier
from core.training.recipes import get_recipe
from core.training.trainer import train_stage

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(epochs=3, batch_size=8)


def _train(phantom_root, out, max_epochs=None, resume=False):
    ds = load_slice_set(phantom_root, 64)
    torch.manual_seed(3)  # the head's initialisation
    model = SliceClassifier(build_backbone("efficientnet_lite0", "imagenet"))
    return train_stage(model, ds.stage_data("train"), ds.stage_data("val"), get_recipe("fast", **TINY), out,
                       seed=3, resume=resume, progress=False, log=lambda m: None, max_epochs=max_epochs)


def test_same_seed_same_metrics_and_resume_is_exact(phantom_root, tmp_path):
    """A run killed after epoch 1 and resumed matches an uninterrupted run of the same seed epoch by epoch: its
    first epoch checks that the seed fixes training, the rest that resuming changes nothing."""
    a = _train(phantom_root, tmp_path / "a")
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in h]
    _train(phantom_root, tmp_path / "c", max_epochs=1)  # "killed" after epoch 1
    c = _train(phantom_root, tmp_path / "c", resume=True)
    assert strip(c["history"]) == strip(a["history"])
    assert (tmp_path / "a" / "best.pt").exists() and not list((tmp_path / "a").glob(".*tmp"))


@pytest.mark.parametrize("native", [False, True])
def test_bf16_runs_only_where_the_hardware_computes_it_and_the_summary_says_which(phantom_root, tmp_path,
                                                                                monkeypatch, native):
    """Emulated bf16 is 4-9x slower than fp32 on an AVX2 CPU: a recipe's bf16 then runs in fp32, logged once
    and recorded in the stage's summary."""
    from core.training import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    ds = load_slice_set(phantom_root, 32)
    model = SliceClassifier(build_backbone("efficientnet_lite0", "imagenet"))
    dtypes, logs = set(), []
    model.register_forward_hook(lambda module, inputs, out: dtypes.add(out.dtype))
    summary = train_stage(model, ds.stage_data("train"), ds.stage_data("val"), get_recipe("fast", epochs=1,
                          batch_size=16), tmp_path, progress=False, log=logs.append)
    want = "bf16" if native else "fp32"
    assert summary["precision"] == want == json.loads((tmp_path / "summary.json").read_text())["precision"]
    assert dtypes == {torch.bfloat16 if native else torch.float32}  # training steps and validation alike
    assert [line for line in logs if "emulated" in line] == ([] if native else
                                                           [f"{tmp_path.name}: bf16 is emulated on this cpu "
                                                            "(slower than fp32): computing in fp32"])


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow  # three trainings in subprocesses; exact resume in-process is the fast test above
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_metrics(phantom_root, tmp_path):
    common = ["global", "--data-root", str(phantom_root), "--image-size", "64", "--epochs", "3",
              "--batch-size", "8", "--seed", "5", "--no-progress",
              "--recipe", "fast"]  # no segmenter needed: the checkpoint comes within seconds
    full = _cli(*common, "--out", str(tmp_path / "full"))
    killed = _cli(*common, "--out", str(tmp_path / "killed"))
    last = tmp_path / "killed" / "global" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert last.exists(), "no checkpoint appeared before the deadline"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "global" / "summary.json").exists()  # it really died mid-run
    resumed = _cli(*common, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    hist = lambda d: [(r["epoch"], round(r["val_auc"], 6), round(r["train_loss"], 5))
                      for r in json.loads((tmp_path / d / "global" / "summary.json").read_text())["history"]]
    assert hist("killed") == hist("full")
    ev = _cli("evaluate", "--run", str(tmp_path / "full"), "--split", "test", "--bootstrap", "50")
    out, err = ev.communicate(timeout=120)
    report = json.loads(out)
    assert report["data"].startswith("synthetic")
    assert set(report["global"]) >= {"accuracy", "f1", "auc", "sensitivity", "specificity"}
    assert len(report["global"]["auc"]["ci"]) == 2


@pytest.mark.parametrize("args, message, as_process", [
    # the process: a command that imports less than training does (a fresh interpreter's imports cost seconds)
    (["audit", "--data-root", "/nonexistent/data"], "does not exist", True),
    (["global", "--data-root", "/nonexistent/data", "--out", "{tmp}/r"], "does not exist", False),
    (["evaluate", "--run", "{tmp}/not-a-run"], "not a run folder", False),
    (["global", "--out", "{tmp}/r", "--init", "{tmp}/missing.pt"], "not found", False),
])
def test_cli_errors_are_one_clear_line_and_exit_2(tmp_path, train_cli, args, message, as_process):
    argv = [a.format(tmp=tmp_path) for a in args]
    if as_process:  # once as `python -m train`: the interpreter's own exit status
        p = _cli(*argv)
        _, err = p.communicate(timeout=120)
        code = p.returncode
    else:
        result = train_cli(*argv)
        code, err = result.returncode, result.stderr
    assert code == 2, err
    assert message in err and "Traceback" not in err

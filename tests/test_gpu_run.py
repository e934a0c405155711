"""`python -m train gpu-run`: the order of work, dropping what does not fit, the imports a GPU machine
lacks, and a CPU dry run of the exact command (bench/gpu_run.sh) on a pack of the phantoms."""
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest

from tests import phantom_sizes
from train.gpu.plan import Speed, ordered_jobs
from train.gpu.runner import Runner
from train.gpu.state import State

ROOT = Path(__file__).resolve().parent.parent
L0, L2 = "efficientnet_lite0", "efficientnet_lite2"


def test_the_headline_comes_first_and_each_self_trans_just_before_its_first_run():
    jobs = ordered_jobs([L0, L2], ["imagenet", "selftrans"], ["guided", "paper"], ["G-H-I-F", "GHI-F", "GHIF"], 3)
    names = [j.name for j in jobs]
    assert names[:5] == ["infnet", f"{L0}-imagenet-guided-G-H-I-F-s0", f"selfsup-{L0}",
                         f"{L0}-selftrans-guided-G-H-I-F-s0", "shortcut"]
    assert names[5:9] == [f"{L0}-{i}-guided-G-H-I-F-s{s}" for s in (1, 2) for i in ("imagenet", "selftrans")]
    assert names[9:14] == [f"{L0}-imagenet-guided-GHI-F-s0", f"{L0}-imagenet-guided-GHIF-s0",
                           f"{L2}-imagenet-guided-G-H-I-F-s0", f"selfsup-{L2}", f"{L2}-selftrans-guided-G-H-I-F-s0"]
    assert names[14] == f"{L0}-imagenet-paper-G-H-I-F-s0"
    pipelines = [j for j in jobs if j.kind == "pipeline"]
    assert len(pipelines) == 3 * (2 * 2 * 2 + 2 * 2) == len({j.name for j in pipelines})  # 36 runs, none twice
    assert [j.tier for j in pipelines][-1] == "more seeds" and jobs[-1].seed == 2


def test_with_audit_every_each_ghif_run_is_audited_right_after_it():
    jobs = ordered_jobs([L0], ["imagenet"], ["guided-heads", "fast"], ["G-H-I-F", "GHIF"], 2, audit="every")
    run = lambda r, st, s: f"{L0}-imagenet-{r}-{st}-s{s}"
    audit = lambda name: [name, f"shortcut-{name}"]
    assert [j.name for j in jobs] == (["infnet"] + audit(run("guided-heads", "G-H-I-F", 0))
                                      + audit(run("guided-heads", "G-H-I-F", 1))
                                      + [run("guided-heads", "GHIF", 0)] + audit(run("fast", "G-H-I-F", 0))
                                      + [run("fast", "GHIF", 0), run("guided-heads", "GHIF", 1)]
                                      + audit(run("fast", "G-H-I-F", 1)) + [run("fast", "GHIF", 1)])
    assert all(j.target == jobs[k - 1].name for k, j in enumerate(jobs) if j.kind == "shortcut")
    assert "shortcut" in [j.name for j in ordered_jobs([L0], ["imagenet"], ["fast"], ["G-H-I-F"], 1)]  # the default


def _runner(tmp_path, budget_s, estimates, outcome=None):
    """A Runner whose jobs only advance a fake clock by their estimate (`outcome`: status per job name)."""
    args = Namespace(budget_min=budget_s / 60, backbones=L0, inits="imagenet,selftrans", epochs=None, batch_size=None,
                     selfsup_epochs=300, selfsup_min_epochs=50, selfsup_share=0.25, selfsup_batch=256,
                     shortcut_seconds=20.0)
    s = State(args=args, t0=0.0, deadline=budget_s, out=tmp_path)
    s.jobs = ordered_jobs([L0], ["imagenet", "selftrans"], ["guided"], ["G-H-I-F", "GHI-F"], 2)
    s.speed = Speed(400)
    import torch

    r = Runner(s, tmp_path, tmp_path, torch.device("cpu"))
    now = [0.0]
    r.clock = lambda: now[0]
    r.estimate = lambda j: estimates.get(j.name.rsplit("-s", 1)[0] if j.kind == "pipeline" else j.kind, 10.0)

    def do(job, dependent=None):
        now[0] += r.estimate(job)
        job.status = (outcome or {}).get(job.name, "done")
        return job.status == "done"

    r.do = do
    return r


def test_what_does_not_fit_is_dropped_and_cheaper_later_runs_still_run(tmp_path):
    est = {"segmenter": 20.0, "selfsup": 40.0, "shortcut": 10.0, f"{L0}-imagenet-guided-G-H-I-F": 30.0,
           f"{L0}-selftrans-guided-G-H-I-F": 30.0, f"{L0}-imagenet-guided-GHI-F": 200.0}
    r = _runner(tmp_path, 240.0, est)  # 240 s less the reserve (10 + 3% of 240): 222.8 s
    assert [j.name for j in r.project()] == [f"{L0}-imagenet-guided-G-H-I-F-s1", f"{L0}-selftrans-guided-G-H-I-F-s1",
                                             f"{L0}-imagenet-guided-GHI-F-s0", f"{L0}-imagenet-guided-GHI-F-s1"]
    r.run_all()
    status = {j.name: j.status for j in r.s.jobs}
    # infnet 20 + s0 30 + selfsup 40 + s0 30 + shortcut 10 = 130 s; the s1 pair needs 69 s (with the margin) of 92.8
    assert status[f"{L0}-imagenet-guided-G-H-I-F-s1"] == "done"
    assert status[f"{L0}-imagenet-guided-GHI-F-s0"] == "dropped"  # 200 s never fits
    assert "needs ~230 s" in next(j.note for j in r.s.jobs if j.name == f"{L0}-imagenet-guided-GHI-F-s0")
    assert sum(v == "done" for v in status.values()) == 7
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [j["status"] for j in plan].count("dropped") == 2
    assert "Dropped (2)" in (tmp_path / "summary.md").read_text()


def test_runs_that_need_a_dropped_self_trans_are_dropped_with_it(tmp_path):
    r = _runner(tmp_path, 600.0, {"segmenter": 5.0, "selfsup": 5.0}, outcome={f"selfsup-{L0}": "dropped"})
    r.run_all()
    dropped = {j.name: j.note for j in r.s.jobs if j.status == "dropped"}
    assert dropped[f"{L0}-selftrans-guided-G-H-I-F-s0"] == f"needs selfsup-{L0} (dropped)"
    assert f"{L0}-selftrans-guided-G-H-I-F-s1" in dropped
    assert all(j.status == "done" for j in r.s.jobs if j.init == "imagenet")


def test_the_gpu_path_imports_nothing_the_gpu_machine_lacks():
    """The GPU machine has torch, torchvision, timm, scikit-learn, scipy, pandas (and numpy, Pillow), plus
    the pack's wheels: nothing else may be imported on the way to a table."""
    blocked = ["cv2", "matplotlib", "pytorch_grad_cam", "ttach", "pydicom", "nibabel", "umap", "openTSNE", "plotly",
               "streamlit"]
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import argparse
import core.pipeline, core.training.segmentation, core.training.selfsup, core.data.pack, core.inference
import train.gpu_run, train.pack, train.reproduce, train.selfsup, train.infnet, train.shortcut, train.probe, train.report
train.gpu_run.add_args(argparse.ArgumentParser())
print('ok')
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.slow  # the device command end to end: a pack, two trainings, the audits
def test_dry_run_of_the_device_command_on_a_phantom_pack(phantom_root, tmp_path):
    """bench/gpu_run.sh as the device tool runs it, at tiny scale on the CPU: pack checked, tables,
    timings and utilisation written, nothing heavy in the output folder."""
    from train.pack import build

    build(phantom_root, tmp_path / "pack", log=lambda m: None)
    tiny = ("--backbones efficientnet_lite0 --inits imagenet,selftrans --recipes fast --strategies G-H-I-F "
            f"--seeds 1 --epochs 1 --batch-size 8 {' '.join(phantom_sizes.ARGS)} --seg-size 64 --seg-epochs 1 "
            "--seg-max-rounds 0 --seg-polish-epochs 0 --selfsup-epochs 1 --selfsup-min-epochs 1 --selfsup-batch 8 "
            f"--calibration-steps 1 --shortcut-limit 2 --audit every --workers 1 --work {tmp_path / 'work'}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "PACK": str(tmp_path / "pack"),
           "OUT": str(tmp_path / "out"), "BUDGET_MIN": "12", "GPU_RUN_ARGS": tiny}
    # A budget every job fits in on a machine a few times slower than this one (the jobs take about 1.5 min
    # here); dropping what does not fit is tested on its own above.
    res = subprocess.run(["bash", "bench/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = tmp_path / "out"
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    print(res.stdout)  # the dry run's output, for `pytest -s`
    assert '"ok": true' in res.stdout and "gpu-run: pack " in res.stdout and " MiB, every sha256 checked" in res.stdout
    assert (out / "console.txt").read_text() == res.stdout
    plan = {j["name"]: j for j in json.loads((out / "plan.json").read_text())}
    assert all(j["status"] == "done" for j in plan.values()), plan
    runs = [f"efficientnet_lite0-{i}-fast-G-H-I-F-s0" for i in ("imagenet", "selftrans")]
    assert [n for n in plan if n.startswith("shortcut")] == [f"shortcut-{r}" for r in runs]  # --audit every
    for run in runs:
        audit = plan[f"shortcut-{run}"]
        assert audit["target"] == run, audit
        assert audit["note"].startswith(f"audit of {run}: fusion AUC ") and "lungs blanked" in audit["note"]
        assert (out / "runs" / run / "shortcut.json").exists()
    assert plan["selfsup-efficientnet_lite0"]["note"].startswith("1 epochs")
    t12 = pd.read_csv(out / "table1_2.csv")
    assert set(t12.init) == {"imagenet", "selftrans"} and set(t12.recipe) == {"fast"}
    assert list(t12.branch[:4]) == ["global", "global+infected", "global+heatmap", "fusion"]
    assert list(pd.read_csv(out / "table3.csv").strategy) == ["G-H-I-F"]
    timings = json.loads((out / "timings.json").read_text())
    assert timings["gpu_utilisation"]["method"] == "unavailable (no GPU)"
    assert {"warm-up (decode, frame)", "calibration", "infnet"} <= {s["stage"] for s in timings["stages"]}
    summary = (out / "summary.md").read_text()
    for part in ("## Tables 1-2", "## Table 3", "## Plan, in order of importance", "## Timings and GPU utilisation",
                 "Synthetic phantoms"):
        assert part in summary
    assert (out / "runs" / "efficientnet_lite0-imagenet-fast-G-H-I-F-s0" / "predictions.csv").exists()
    assert not list(out.rglob("*.pt"))  # checkpoints stay in --work

"""`make demo` (train/demo.py, train/background.py): the dashboard at once, the training beside it.

The demo on the phantoms with a tiny schedule: its server up, its training stopped mid-stage by stopping the
server (Ctrl-C), then resumed in the background until the run completes, every epoch logged once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.after_training import planned
from core.errors import UsageError
from core.runs.progress import DONE, FINISHED, HALTED, OUTPUT, STOPPED, ProgressLog, RunProgress
from tests import phantom_sizes
from tests.test_browser import free_port
from train import demo
from train.background import GRACE_S, BackgroundTraining

ROOT = Path(__file__).resolve().parent.parent
# the recipe before guidance, tiny sizes: global trains 5 epochs, long enough to be stopped in the middle; the
# audits are test_after_training.py's
TINY = ["--recipe", "fast", "--epochs", "5", "--batch-size", "8", *phantom_sizes.ARGS,
        "--seg-size", "64", "--seg-epochs", "2", "--seg-max-rounds", "1", "--seg-per-round", "8",
        "--seg-steps-per-round", "2", "--seg-polish-epochs", "0", "--no-seg-tta", "--no-audits"]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s")


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@pytest.mark.slow  # a whole demo run in a subprocess, stopped and resumed
def test_demo_stopped_mid_stage_resumes_and_completes(phantom_root, tmp_path):
    run = tmp_path / "runs" / "demo"
    args = ["--data-root", str(phantom_root), *TINY]
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(tmp_path / "demo.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "train", "demo", "--out", str(run), "--port", str(port), "--",
                                 *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # the data root is recorded before the pipeline starts: the Data page works at once
        wait_for(lambda: (run / "config.json").exists(), 60, "config.json", proc)
        assert json.loads((run / "config.json").read_text())["data_root"] == str(phantom_root)
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), 120, "dashboard", proc)
        global_epochs = lambda: (s := RunProgress.read(run).stage("global")) is not None and s.epochs_done
        wait_for(global_epochs, 600, "global epoch", proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C on the dashboard
        try:  # the server's shutdown, then the training's SIGTERM (SIGKILL after GRACE_S)
            assert proc.wait(GRACE_S + 60) == 130
        except subprocess.TimeoutExpired:
            pytest.fail(f"Ctrl-C did not stop the demo in {GRACE_S + 60} s; its output ends:\n"
                        f"{(tmp_path / 'demo.out').read_text()[-2000:]}\ntraining output ends:\n"
                        f"{(run / OUTPUT).read_text()[-2000:] if (run / OUTPUT).exists() else '(none)'}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not healthy(f"http://127.0.0.1:{port}")
    rp = RunProgress.read(run)
    assert rp.state == STOPPED and not rp.live  # stopping the server stopped the training
    exits = [e for e in rp.events if e["event"] == "exit"]
    assert len(exits) == 1 and exits[0]["stopped"] is True
    g = rp.stage("global")
    assert g.state == HALTED and 1 <= g.epochs_done < 5
    assert (run / "global" / "last.pt").exists() and not (run / "global" / "summary.json").exists()

    again = BackgroundTraining(run, args).start()  # what the next `make demo` does
    assert again.wait(900) == 0, (run / OUTPUT).read_text()[-3000:]
    rp = RunProgress.read(run)
    assert rp.state == FINISHED and all(s.state == DONE for s in rp.stages.values())
    assert list(rp.stages) == ["global", "heatmap", "infnet", "infected", "global+heatmap", "fusion",
                               *(st.name for st in planned(audits=False))]  # then the stages after training
    summary = json.loads((run / "global" / "summary.json").read_text())
    assert [r["epoch"] for r in rp.stage("global").rows] == list(range(1, summary["epochs_run"] + 1))
    resumed = [e["resumed_at"] for e in rp.events if e["event"] == "stage_start" and e["stage"] == "global"]
    assert resumed[0] == [0, 1] and resumed[1][1] in (g.epochs_done, g.epochs_done + 1)
    assert "p_fusion" in (run / "predictions.csv").read_text().splitlines()[0]
    assert (run / "metrics_test.json").exists()  # the demo's test-split evaluation ran after the pipeline


def test_demo_refuses_a_run_another_process_trains(tmp_path):
    run = tmp_path / "busy"
    ProgressLog.of_run(run).process_event("launch", pid=os.getpid())
    with pytest.raises(UsageError, match=f"being trained by process {os.getpid()}"):
        demo.prepare(run, [])


def test_demo_records_the_data_root_and_serves_a_finished_run_as_it_is(phantom_root, tmp_path):
    run = tmp_path / "r"
    assert demo.prepare(run, ["--epochs", "2", "--data-root", str(phantom_root)]) is True
    assert json.loads((run / "config.json").read_text())["data_root"] == str(phantom_root)
    log = ProgressLog.of_run(run)
    log.plan([])
    log.done(1.0)
    assert RunProgress.read(run).state == FINISHED
    assert demo.prepare(run, ["--data-root", str(phantom_root)]) is False

"""The dashboard at once, the training beside it (what `make demo` runs).

    python -m train demo --out runs/demo -- --epochs 8                          # phantoms, a short schedule
    python -m train demo --out runs/real-demo -- --data-root ../shared/data     # the real data, the default recipe

Serves the dashboard (http://127.0.0.1:PORT) over the run's folder of runs and trains the run in the
background (train/background.py: `python -m train pipeline ARGS --out RUN --resume`, then the test-split
evaluation; output in RUN/train.out). Each page shows what exists; the Training page follows the
training live; the Data page browses the data before any model exists.

Stopping the dashboard (Ctrl-C) stops the training too: a training left running on its own would hold
the CPU with nobody watching. Nothing is lost: every run file is written atomically and the next
`make demo` (this command again) resumes the run from its last finished epoch. A run whose progress log
says it finished is served without training again; one another process is training is refused.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from core.data.slices import training_data_root
from core.errors import UsageError
from core.runs.progress import FINISHED, OUTPUT, RunProgress
from core.runs.runfolder import RunFolder

from .background import ROOT, BackgroundTraining, training_process


def add_args(p):
    p.add_argument("--out", required=True, help="the run folder to train and show, e.g. runs/demo")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="where the dashboard listens (default: this machine only)")
    p.add_argument("pipeline_args", nargs=argparse.REMAINDER,
                   help="after --: arguments of `python -m train pipeline` (--data-root DATA, --epochs N ...)")


def pipeline_args(args) -> list[str]:
    rest = list(args.pipeline_args)
    return rest[1:] if rest[:1] == ["--"] else rest


def prepare(run_path, train_args: list[str]) -> bool:
    """Refuse a run another process is training; record the data root so the Data page works before the
    pipeline starts. Returns whether the run still has to train."""
    busy = training_process(run_path)
    if busy is not None:
        raise UsageError(f"{run_path} is being trained by process {busy}; stop that one first, or choose another --out")
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-root", default=None)
    known, _ = parser.parse_known_args(train_args)
    data_root, synthetic = training_data_root(known.data_root)  # before the run folder is made
    run = RunFolder(run_path, create=True)
    if not run.config.get("data_root"):
        run.update_config(data_root=str(data_root), synthetic=synthetic)
    return RunProgress.read(run_path).state != FINISHED


def run(args) -> int:
    run_path = Path(args.out).resolve()
    train_args = pipeline_args(args)
    ended = lambda rc: print(f"training of {run_path} " + ("finished; its test-split evaluation is in the Overview"
                                                          if rc == 0 else f"ended with status {rc}: see {OUTPUT}"),
                             flush=True)
    training = BackgroundTraining(run_path, train_args, on_end=ended) if prepare(run_path, train_args) else None
    if training is not None:
        training.start()
    url = f"http://{args.address}:{args.port}"
    print(f"dashboard: {url}  (Ctrl-C stops it and the training)", flush=True)
    print(f"training: {'in the background, output in ' + str(training.output) if training else 'finished earlier'}; "
          "the Training page follows it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a plain kill stops the training too
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                               "--server.address", args.address, "--server.port", str(args.port),
                               "--", "--runs", str(run_path.parent)], cwd=ROOT)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
        if training is not None and training.running:
            training.stop()
            print(f"training stopped; `make demo` (or this command) resumes {run_path} where it stopped", flush=True)

"""A run's training in the background, beside the dashboard (`python -m train demo`, `make demo`).

`python -m train pipeline ARGS --out RUN --resume --no-progress`, then, when it succeeds,
`python -m train evaluate --run RUN --split test`, each in a process group of its own (a Ctrl-C meant
for the dashboard does not reach them), their output appended to RUN/train.out. The progress log
(core.runs.progress) gets a `launch` event naming the training process and an `exit` event when it ends
(`stopped`: this object stopped it). `stop()` ends the process group: SIGTERM, then SIGKILL after a grace
period. Every file of a run is written atomically and each stage resumes from its last finished epoch
(Algorithm 1: its last finished round), so a stopped training loses at most the epoch under way and the
next start continues it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from core.runs.progress import OUTPUT, ProgressLog, RunProgress

ROOT = Path(__file__).resolve().parents[1]
GRACE_S = 20  # seconds a stopped process has to end before SIGKILL


class BackgroundTraining:
    def __init__(self, run: str | Path, pipeline_args: list[str], evaluate: bool = True, python: str = sys.executable,
                 on_end=None):
        """`on_end(returncode)`: called when the training ends by itself (not when stopped)."""
        self.run = Path(run).resolve()
        self.commands = [[python, "-m", "train", "pipeline", *pipeline_args, "--out", str(self.run), "--resume",
                          "--no-progress"]]
        if evaluate:
            self.commands.append([python, "-m", "train", "evaluate", "--run", str(self.run), "--split", "test"])
        self.log = ProgressLog.of_run(self.run)
        self.returncode: int | None = None  # the pipeline's
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._on_end = on_end
        self._thread = threading.Thread(target=self._work, name=f"training {self.run.name}", daemon=True)

    @property
    def output(self) -> Path:
        return self.run / OUTPUT

    def start(self) -> BackgroundTraining:
        self.run.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def _work(self) -> None:
        self._run_commands()
        if self._on_end is not None and not self._stopping:
            self._on_end(self.returncode)

    def _run_commands(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.output, "ab") as out:
            for i, cmd in enumerate(self.commands):
                with self._lock:
                    if self._stopping:
                        return
                    self._proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True)
                    if i == 0:
                        self.log.process_event("launch", pid=self._proc.pid, command=cmd[1:])
                rc = self._proc.wait()
                if i == 0:
                    self.returncode = rc
                    self.log.write("exit", returncode=rc, stopped=self._stopping)
                if rc != 0:
                    return

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> int | None:
        """The pipeline's exit status once both commands are done (None: still running after `timeout`)."""
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self.returncode

    def stop(self, grace: float = GRACE_S) -> None:
        """End the training now (nothing already saved is lost; the next start resumes it)."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if self._thread.is_alive():
            self._thread.join()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # ended meanwhile
        pass


def training_process(run: str | Path) -> int | None:
    """The pid of a live process training the run folder `run`, else None."""
    rp = RunProgress.read(run)
    return rp.pid if rp.live else None

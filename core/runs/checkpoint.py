"""Checkpoints and cache files: written atomically, read safely.

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target, so
a reader never sees a half-written file and a crash leaves the previous version intact.
Loads always use `torch.load(weights_only=True)`: a checkpoint that is a pickle carrying code is
refused, never executed.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    pass


def check_writable(path: str | Path) -> Path:
    """`path` as a file to write: not an existing folder, and the nearest existing folder above it a folder, not a
    file. A CheckpointError names it (one line on the command line); commands call this before their work, and
    every atomic write does again."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a file name to write")
    parent = next((p for p in path.parents if p.exists()), Path("."))  # "." or "/" ends every path's parents
    if not parent.is_dir():
        raise CheckpointError(f"{path}: cannot be written, {parent} is a file, not a folder")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(obj: dict, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc):
            msg = "refused: the file holds Python objects beyond tensors and plain values (possible code)"
        raise CheckpointError(f"{path}: not a valid checkpoint ({msg})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(obj).__name__}, expected a dict")
    return obj


def load_weights(model: torch.nn.Module, ckpt: dict, path: str | Path) -> None:
    """`ckpt`'s weights into `model`; a checkpoint whose weights do not fit the model (one saved by an older
    version: the joint network named its branches otherwise) gets one line that names the file and the fix."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit today's {type(model).__name__} ({first}); if the "
                              "run was saved by an older version, `python -m train migrate RUN` updates it") from None


def save_resume_point(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """The end of an epoch: weights, optimiser and the loop's JSON state, what `resume` reads back."""
    save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": json.dumps(state)}, path)


def resume(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """Loads a resume point (save_resume_point) into `model` and `opt` and returns its loop state;
    None when `path` does not exist (a fresh start)."""
    if not Path(path).exists():
        return None
    ckpt = load_checkpoint(path)
    load_weights(model, ckpt, path)
    opt.load_state_dict(ckpt["optimizer"])
    return json.loads(ckpt["state"])

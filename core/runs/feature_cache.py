"""Cached tensors of frozen models, keyed by what produced them, checked by checksum.

Each entry is two files in runs/<name>/features/: `<name>-<key>.pt` (tensors) and `<name>-<key>.json`
(the key's parts and the payload's sha256). The key hashes what produced the tensors (checkpoint
hash, preprocessing, tau, CAM method...), so changing any of them makes a new entry; a payload
whose checksum does not match (a torn or edited file) is rebuilt, never trusted.

One folder can hold several entries of one name (another tau, another CAM method, a retrained
stage). `features/index.json` names the entry the run's own configuration uses: the pipeline
records it (`remember`), readers find it by that key (`current`), never by which file is newest.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from core.runs.checkpoint import atomic_write_bytes, atomic_write_text
from core.runs.runfolder import read_json_object
from core.training.runtime import rank0_first, world


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _paths(folder: Path, name: str, parts: dict) -> tuple[Path, Path]:
    k = key_of(parts)
    return folder / f"{name}-{k}.pt", folder / f"{name}-{k}.json"


def load_cached(folder: str | Path, name: str, parts: dict) -> dict | None:
    payload, meta = _paths(Path(folder), name, parts)
    if not (payload.exists() and meta.exists()):
        return None
    try:
        data = payload.read_bytes()
        if hashlib.sha256(data).hexdigest() != json.loads(meta.read_text())["sha256"]:
            return None
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (ValueError, KeyError, OSError, RuntimeError, EOFError):
        return None


def save_cached(folder: str | Path, name: str, parts: dict, tensors: dict) -> None:
    payload, meta = _paths(Path(folder), name, parts)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    data = buf.getvalue()
    atomic_write_bytes(payload, data)
    atomic_write_text(meta, json.dumps({"name": name, "parts": parts, "sha256": hashlib.sha256(data).hexdigest()},
                                       indent=1, default=str))


def cached(folder: str | Path, name: str, parts: dict, compute) -> dict:
    """Load the entry for `parts`, or compute, save and return it.

    Under DDP only rank 0 looks, computes and writes; the other ranks wait for it, then read the entry.
    Every rank passes the same barrier whether the entry was there or not: a rank that decided on its
    own (the entry written meanwhile) would skip a barrier the others wait at."""
    out = rank0_first(lambda: _load_or_make(folder, name, parts, compute))
    if out is None:
        out = load_cached(folder, name, parts)
        if out is None:
            raise CacheError(f"rank {world()[0]}: cached '{name}' ({key_of(parts)}) unreadable in {folder} "
                             "after rank 0 wrote it")
    return out


def _load_or_make(folder, name, parts, compute):
    hit = load_cached(folder, name, parts)
    if hit is not None:
        return hit
    tensors = compute()
    save_cached(folder, name, parts, tensors)
    return tensors


INDEX = "index.json"


class CacheError(RuntimeError):
    """A feature-cache entry that cannot be read where it must be (another rank wrote it)."""


def remember(folder: str | Path, name: str, parts: dict) -> None:
    """Record the entry for `parts` as the run's own `name` (the one readers load)."""
    index = Path(folder) / INDEX
    known = read_json_object(index) if index.exists() else {}
    atomic_write_text(index, json.dumps({**known, name: key_of(parts)}, indent=1, sort_keys=True))


def current(folder: str | Path, name: str) -> dict | None:
    """The run's own entry called `name` (found by the key `remember` recorded in the index), or None when the
    run never recorded one."""
    folder = Path(folder)
    index = folder / INDEX
    key = read_json_object(index).get(name) if index.exists() else None
    meta = folder / f"{name}-{key}.json"
    if key is None or not meta.exists():
        return None
    return load_cached(folder, name, read_json_object(meta).get("parts", {}))

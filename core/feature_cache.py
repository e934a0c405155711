"""Cached tensors of frozen models, keyed by what produced them, checked by checksum.

Each entry is two files in runs/<name>/features/: `<name>-<key>.pt` (tensors) and `<name>-<key>.json`
(the key's parts and the payload's sha256). The key hashes what produced the tensors (checkpoint
hash, preprocessing, tau, CAM method...), so changing any of them makes a new entry; a payload
whose checksum does not match (a torn or edited file) is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from .checkpoint import atomic_write_bytes, atomic_write_text


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

    Under DDP only rank 0 computes and writes; the other ranks wait for it, then read the entry."""
    hit = load_cached(folder, name, parts)
    if hit is not None:
        return hit
    from .trainer import rank0_first

    out = rank0_first(lambda: _save_and_return(folder, name, parts, compute()))
    return load_cached(folder, name, parts) if out is None else out


def _save_and_return(folder, name, parts, tensors):
    save_cached(folder, name, parts, tensors)
    return tensors


def latest(folder: str | Path, name: str) -> dict | None:
    """The most recently written valid entry called `name` (the dashboard's view of a run)."""
    metas = sorted(Path(folder).glob(f"{name}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for m in metas:
        parts = json.loads(m.read_text()).get("parts", {})
        hit = load_cached(folder, name, parts)
        if hit is not None:
            return hit
    return None

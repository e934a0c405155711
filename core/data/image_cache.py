"""Decode each source image once: resized uint8 copies cached in memory and on disk.

Keyed by the file's content hash and the target size, so a renamed file hits and an edited file
misses. The disk cache is a folder of .npy files (default `.cache/images` in the project; set
COVID_LAB_CACHE to move it); each write is atomic, and an unreadable entry is re-decoded.
"""
from __future__ import annotations

import hashlib
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data.imaging import read_slice
from core.runs.checkpoint import atomic_write_bytes

DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cache" / "images"


def cache_dir() -> Path:
    return Path(os.environ.get("COVID_LAB_CACHE", DEFAULT_DIR))


@lru_cache(maxsize=65536)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def file_hash(path: str | Path) -> str:
    st = os.stat(path)
    return _file_hash(str(path), st.st_mtime_ns, st.st_size)


def resize01(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float in [0, 1] -> (size, size) with antialiasing."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1).numpy()


_memory: dict[tuple, object] = {}  # every entry this process has read or made, by its key


def memoised(key: tuple, filename: str, read, compute, encode):
    """One cached value: from memory, else from `cache_dir()/filename` (`read(path)`; None or a read
    error means a damaged or stale entry), else `compute()`, written back as `encode(value)` bytes."""
    hit = _memory.get(key)
    if hit is not None:
        return hit
    disk = cache_dir() / filename
    value = None
    if disk.exists():
        try:
            value = read(disk)
        except (ValueError, OSError, EOFError, KeyError):
            value = None  # damaged entry: compute again and overwrite
    if value is None:
        value = compute()
        atomic_write_bytes(disk, encode(value))
    _memory[key] = value
    return value


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """(size, size) uint8 copy of a slice file, decoded at most once per content and size."""
    key = (file_hash(path), size)

    def read(disk):
        arr = np.load(disk, allow_pickle=False)
        return arr if arr.shape == (size, size) and arr.dtype == np.uint8 else None

    return memoised(key, f"{key[0]}-{size}.npy", read,
                    lambda: (resize01(read_slice(path), size) * 255).round().astype(np.uint8), npy_bytes)


def load_stack(paths, size: int) -> torch.Tensor:
    """(N, 1, size, size) uint8 tensor of many slices."""
    return torch.from_numpy(np.stack([load_resized(p, size) for p in paths]))[:, None]

"""Where a computation runs: the process's rank under DDP (rank 0 writes files) and the autocast precision.

Imported by every module that trains, caches or segments; it imports nothing from the project, so no
module needs the trainer for these.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def rank0_first(fn):
    """Run `fn` on rank 0 only (other ranks get None) and let every rank continue once it is done."""
    rank, size = world()
    out = fn() if rank == 0 else None
    if size > 1:
        dist.barrier()
    return out


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

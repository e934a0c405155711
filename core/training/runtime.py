"""Where a computation runs: the process's rank under DDP (rank 0 writes files) and the autocast precision
(bf16 only where the hardware computes it).

Imported by every module that trains, caches or segments; it imports nothing from the project, so no
module needs the trainer for these.
"""
from __future__ import annotations

import contextlib
import functools

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


def native_bf16(device: torch.device) -> bool:
    """Whether the hardware computes bf16 itself. Elsewhere autocast emulates it, slower than fp32: on an AVX2
    CPU without AVX512-BF16 or AMX, an EfficientNet-Lite0 training step took 4-6x (224 px) to 9x (64 px) as long
    (`python -m bench --only precision`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_bf16()
    return False


@functools.cache  # autocast asks on every batch; the CPU does not change
def _cpu_bf16() -> bool:
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))


def effective_precision(precision: str, device) -> str:
    """The precision a computation runs in. bf16 is a speed setting, so where the hardware only emulates it
    the computation runs in fp32; the trainers record and log the precision they ran in."""
    return "bf16" if precision == "bf16" and native_bf16(torch.device(device)) else "fp32"


def run_precision(precision: str, device, log, who: str) -> str:
    """effective_precision for a stage that trains, said once in its log (`who`: its name) when it is not the
    precision asked."""
    ran = effective_precision(precision, device)
    if ran != precision:
        log(f"{who}: {precision} is emulated on this {torch.device(device).type} (slower than fp32): "
            f"computing in {ran}")
    return ran


def autocast(precision: str, device: torch.device):
    if effective_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

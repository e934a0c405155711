"""Arguments and set-up shared by every `python -m train` command."""
from __future__ import annotations

import argparse
import os

import torch


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data); "
                        "omitted: the embedded synthetic phantom data set")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def rounds_arg(text: str) -> int | None:
    """--max-rounds / --seg-max-rounds: a number of Algorithm 1 rounds, or 'all' (None: until the pool is empty)."""
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of rounds or 'all', got {text!r}")
    return int(text)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    return torch.device(name)


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return True

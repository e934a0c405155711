"""A data set as tensors: the slices of COVID-CT (or its phantom stand-in) decoded once, per split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.data.covidct import SPLITS, Slice, covidct_root, read_covidct
from core.data.image_cache import load_stack
from core.data.phantom import is_synthetic, write_dataset
from core.data.semiseg import semiseg_root


@dataclass
class StageData:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor  # (N,) float 0/1

    def __len__(self):
        return len(self.labels)

    def batch(self, idx) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.inputs.items()}



SYNTHETIC_DIR = Path(__file__).resolve().parents[2] / ".cache" / "synthetic"


def resolve_data_root(data_root: str | Path | None) -> tuple[Path, bool]:
    """The data location and whether it is synthetic. None -> the embedded phantom data set."""
    if data_root is None:
        # Enough phantoms for a few optimiser steps an epoch: the demo should learn something.
        return write_dataset(SYNTHETIC_DIR, {"train": 64, "val": 16, "test": 16}, n_seg_train=16, n_seg_test=8,
                             n_unlabelled=32), True
    return Path(data_root).resolve(), is_synthetic(data_root)


def training_data_root(data_root: str | Path | None) -> tuple[Path, bool]:
    """`resolve_data_root`, with the data sets every run trains on (COVID-CT, COVID-SemiSeg) checked there
    (core.data.errors.DataError): a command calls it before it makes a run folder or rewrites its config, so a
    wrong --data-root leaves a run as it was."""
    root, synthetic = resolve_data_root(data_root)
    covidct_root(root), semiseg_root(root)
    return root, synthetic


@dataclass
class SliceSet:
    slices: list[Slice]
    images: torch.Tensor  # (N, 1, S, S) uint8

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([s.label for s in self.slices], dtype=torch.float32)

    def split_index(self, split: str) -> torch.Tensor:
        return torch.tensor([i for i, s in enumerate(self.slices) if s.split == split], dtype=torch.long)

    def stage_data(self, split: str, **extra: torch.Tensor) -> StageData:
        """Rows of `split`: {"image": ..., **extra (full-length tensors, indexed alike)}."""
        idx = self.split_index(split)
        inputs = {"image": self.images[idx], **{k: v[idx] for k, v in extra.items()}}
        return StageData(inputs, self.labels[idx])


def load_slice_set(data_root: str | Path, size: int) -> SliceSet:
    slices = read_covidct(data_root)
    return SliceSet(slices, load_stack([s.path for s in slices], size))


__all__ = ["SPLITS", "SliceSet", "load_slice_set", "resolve_data_root", "training_data_root"]

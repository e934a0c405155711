"""A second source for the classifier's training split: slices of COVID-SemiSeg's 20 CT volumes (D2),
both classes, from the same scanners and the same volumes.

COVID-CT's two classes come from different sources (COVID: figures cut from papers; non-COVID:
other collections), so a network can tell them apart by the source alone. D2 holds CT volumes of
COVID patients: slices with lesions and slices without. The run's segmenter labels each slice
(`lesion share` of its lung field, core.inputs.lesion_maps.lesion_share): at least LESION_MIN -> COVID, at most
CLEAR_MAX -> non-COVID, in between left out (unsure); slices whose lung field covers less than
LUNG_MIN of the frame (apex and base) are left out too. Equal numbers of each class (at most
PER_CLASS), drawn with the run's seed. Both classes then share one source, so only what the slice
shows (lesions or none) separates them there; adding COVID slices of a new source alone would teach
"new source = COVID" instead.

The labels are the segmenter's, not an expert's: a lesion-free slice of a COVID patient's volume
stands for "no COVID findings on this slice", which is what a slice classifier can see. Only
training rows are added: validation (model selection, operating points) stays COVID-CT's. The global
branch trains on them; with the run setting heads_second_source (recipe `guided-heads`) the vector
heads do too, on the branch vectors the trained branches give these slices (core/pipeline.py).
The labelled COVID-SemiSeg slices (D1, MedSeg) that the shortcut audit reports on are another
source and are never added.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data.semiseg import read_unlabelled
from core.inputs.fields import FieldFinder
from core.inputs.frames import CLASSICAL, load_frames
from core.inputs.lesion_maps import lesion_share, lesion_target

SOURCES = ("none", "semiseg-volumes")
LESION_MIN = 0.05  # share of the lung field the segmenter calls lesion: a COVID slice
CLEAR_MAX = 0.002  # at most this: a slice without findings
LUNG_MIN = 0.25  # share of the frame the lung field must cover (no apex or base slices)
PER_CLASS = 250


@dataclass
class SecondSource:
    keys: list[str]
    images: torch.Tensor  # (N, 1, S, S) uint8, harmonised as the run's input
    lungs: torch.Tensor  # (N, 1, S, S) uint8 0/255
    lesion: torch.Tensor  # (N, 1, S, S) uint8 0/255: the segmenter's lesions on COVID rows, 0 elsewhere
    labels: torch.Tensor  # (N,) float 0/1

    def rows(self, keys) -> dict:
        """The training inputs a stage reads, by key (image, lung, lesion)."""
        table = {"image": self.images, "lung": self.lungs, "lesion": self.lesion}
        return {k: table[k] for k in keys}


def candidates(data_root) -> list:
    return read_unlabelled(data_root)


def select(share: torch.Tensor, lung_cover: torch.Tensor, found: torch.Tensor, seed: int,
           per_class: int = PER_CLASS) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the chosen slices and their labels: balanced, drawn with `seed`."""
    ok = found & (lung_cover >= LUNG_MIN)
    pos = torch.nonzero(ok & (share >= LESION_MIN))[:, 0]
    neg = torch.nonzero(ok & (share <= CLEAR_MAX))[:, 0]
    k = min(len(pos), len(neg), per_class)
    g = torch.Generator().manual_seed(seed)
    pick = lambda idx: idx[torch.randperm(len(idx), generator=g)[:k]].sort().values
    idx = torch.cat([pick(pos), pick(neg)])
    return idx, torch.cat([torch.ones(k), torch.zeros(k)])


def build(data_root, size: int, mode: str, lesion_prob_u8, seed: int,
          fields: FieldFinder = CLASSICAL) -> tuple[SecondSource, dict]:
    """The chosen D2 slices at the run's input size and mode, their lung fields found by `fields` (the
    run's FieldFinder). `lesion_prob_u8(slices) -> (N, h, w)` uint8 lesion probabilities of the run's
    segmenter on those SegSlices (core.inputs.lesion_maps.lesion_map_u8). Returns the rows and a summary
    for the run's log and config."""

    sl = candidates(data_root)
    frames = load_frames([s.image for s in sl], size, mode, fields)
    prob = lesion_prob_u8(sl)
    share = lesion_share(prob, frames.lungs)
    cover = (frames.lungs > 127).flatten(1).float().mean(1)
    idx, labels = select(share, cover, frames.found, seed)
    lesion = lesion_target(prob[idx], labels, size)
    rows = SecondSource([sl[i].key for i in idx.tolist()], frames.images[idx], frames.lungs[idx], lesion, labels)
    summary = {"candidates": len(sl), "covid": int(labels.sum()), "non_covid": int((1 - labels).sum()),
               "lesion_min": LESION_MIN, "clear_max": CLEAR_MAX, "lung_min": LUNG_MIN}
    return rows, summary

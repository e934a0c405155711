"""The lung field a run's input is built on (core.inputs.harmonise).

Input `lungs` (and `slice`, for its audits) uses the classical field of core.inputs.lungs. That field
misses dense consolidations that fill a lung out to the chest wall: they are as bright as the wall, and
everything outside the field is blanked before the networks see the slice. Input `lungs+lesions` adds
the run's own segmenter's lesion pieces that touch the field (core.inputs.lungs.with_lesions), so the
most diseased parts of a slice stay in view. The segmenter reads the whole slice at its own size and
inference settings and is thresholded as its metrics are; `train lungs --run` measures the same field.

A `FieldFinder` is the one place that turns a slice into its field for a run: the pipeline's frames,
the second source, live analysis, the shortcut audit and the dashboard all ask it. Its `key` is part of
every cache key of frames built on it, so another segmenter never serves stale frames.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data.image_cache import resize01
from core.inputs.lungs import TOUCH, LungField, lung_field, with_lesions
from core.models.segmenter import load_segmenter, segment
from core.runs.feature_cache import file_digest

WITH_LESIONS = "lungs+lesions"  # the input mode whose field needs the run's segmenter


def needs_segmenter(mode: str) -> bool:
    return mode == WITH_LESIONS


class FieldFinder:
    """slice (H, W) in [0, 1] -> its LungField as a run's input mode wants it.

    `segmenter`: the run's segmenter checkpoint (infnet/best.pt) for input `lungs+lesions`, None for
    the classical field alone; `seg`: its SegConfig (size, threshold, inference settings). The model is
    loaded on the first slice that needs it, so a reader whose frames are all cached never loads it."""

    def __init__(self, segmenter: Path | None = None, seg=None, device: str | torch.device = "cpu"):
        if (segmenter is None) != (seg is None):
            raise ValueError("a FieldFinder needs both the segmenter checkpoint and its settings, or neither")
        if segmenter is not None and not Path(segmenter).exists():
            raise FileNotFoundError(f"segmenter checkpoint {segmenter} does not exist (input {WITH_LESIONS} needs it)")
        self.segmenter, self.seg, self.device = (None if segmenter is None else Path(segmenter)), seg, device
        # Frames are built at two sizes from one field: remember each field (bit-packed) by the slice's bytes.
        self._memo: dict[str, tuple[np.ndarray, tuple[int, int], bool, str]] = {}

    @classmethod
    def for_mode(cls, mode: str, segmenter: Path | None = None, seg=None, device="cpu") -> FieldFinder:
        """The finder input `mode` uses; `segmenter`/`seg` are read only when the mode needs them."""
        if not needs_segmenter(mode):
            return cls()
        if segmenter is None or seg is None or not Path(segmenter).exists():
            raise ValueError(f"input {WITH_LESIONS!r} needs the run's trained segmenter (infnet/best.pt) and its "
                             f"settings; got {segmenter}")
        return cls(segmenter, seg, device)

    @classmethod
    def of_run(cls, run, cfg, device="cpu") -> FieldFinder:
        """The finder of a trained run (a RunFolder and its PipelineConfig): its segmenter where its input needs it."""
        return cls.for_mode(cfg.input, run.stage("infnet") / "best.pt", cfg.seg, device)

    @cached_property
    def key(self) -> str:
        """'' for the classical field (keys of frames built before this module stay valid); else the
        segmenter's content digest and every setting that changes its mask."""
        if self.segmenter is None:
            return ""
        s = self.seg
        return f"-les{file_digest(self.segmenter)}-s{s.size}-t{s.threshold}-{s.precision}-tta{int(s.tta)}-touch{TOUCH}"

    @cached_property
    def _model(self):
        return load_segmenter(self.segmenter, device=self.device).eval()

    def lesions(self, img01: np.ndarray) -> np.ndarray:
        """(H, W) bool: the segmenter's lesion mask of the whole slice, at the slice's shape."""
        x = torch.from_numpy(resize01(img01, self.seg.size))[None, None]
        prob = segment(self._model, x, device=self.device, **self.seg.inference)
        return F.interpolate(prob, size=img01.shape, mode="bilinear", align_corners=False)[0, 0].numpy() >= self.seg.threshold

    def __call__(self, img01: np.ndarray) -> LungField:
        if self.segmenter is None:
            return lung_field(img01)
        digest = hashlib.sha1(np.ascontiguousarray(img01).tobytes()).hexdigest()
        if digest in self._memo:
            bits, shape, found, reason = self._memo[digest]
            return LungField(np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool), found, reason)
        field = with_lesions(lung_field(img01), self.lesions(img01))
        self._memo[digest] = (np.packbits(field.mask), field.mask.shape, field.found, field.reason)
        return field

"""Can the lungs be read on this slice at all? A slice shown in a soft-tissue (mediastinal) window has black lungs.

A radiologist reads the lung parenchyma in the lung window (W1500/L-600): there lung tissue (-950 to -100 HU) is
grey, and ground glass, COVID-19's first sign, is a lighter grey. A soft-tissue window (W400/L40) is for the heart,
vessels and nodes: everything under -160 HU is black, the lungs and their ground glass with them. On such a slice the
segmenter finds no lesion and the classifiers see no parenchyma, so a low p(COVID) says nothing about the lungs. The
image checks (core.trust.image_check) do not flag it when its lung field is found, because COVID-CT holds such
slices too (docs/data.md: 40 of its 746, 36 of them non-COVID); when none is found they flag it without saying why.
So the slice's answers say it in words of their own.

Read from what arrives. In the lung window nothing in a chest is black (black is under -1305 HU, below air). With a
lung field: the share of it that is black; COVID-CT's slices split cleanly, 699 under 10% and 40 at 50% or more, and
none of COVID-SemiSeg's or COVID-CT-MD's reaches 20%. Without one (the lung finder often finds none when the lungs
are as black as the air outside): the share of the body that is black, the body being the largest region that is
not, with what it encloses: in a soft-tissue window the lungs make 37% of it on a COVID-CT-MD slice shown so and
51-57% on drawn phantoms, while no slice of COVID-SemiSeg's 1698 reaches 13% nor of COVID-CT-MD's 452 1%.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.inputs.lungs import LungField

BLACK = 0.03  # grey under which a pixel is black: -1305 HU in the lung window, below anything in a chest
FIELD_SHARE = 0.5  # lungs unreadable when at least half the lung field is black
BODY_SHARE = 0.2  # without a lung field: when at least a fifth of the body is black
FIELD, BODY = "lung field", "body"
WORDS = ("The lungs are black on this slice: it is shown in a soft-tissue window, where ground glass cannot be seen, "
         "so neither step can find disease in them and a low p(COVID) says nothing about the lungs. Read it in the "
         "lung window (W1500/L-600): upload its DICOM, or export it in that window.")


@dataclass(frozen=True)
class LungsBlack:
    share: float  # of `of` that is black
    of: str  # FIELD or BODY

    @property
    def readable(self) -> bool:
        return self.share < (FIELD_SHARE if self.of == FIELD else BODY_SHARE)

    def to_json(self) -> dict:
        return {"black_share": round(self.share, 4), "of": self.of}


def _body(slice01: np.ndarray) -> np.ndarray | None:
    """The largest region that is not black, with the holes it encloses (the lungs, in a soft-tissue window)."""
    lab, n = ndimage.label(slice01 >= BLACK)
    if n == 0:
        return None
    return ndimage.binary_fill_holes(lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:])))


def lungs_black(slice01: np.ndarray, field: LungField) -> LungsBlack | None:
    """How black the lungs of `slice01` (a (H, W) image in [0, 1]) are: on its lung field `field` when found, else on
    its body; None for a slice all black."""
    img = np.asarray(slice01)
    if field.found and field.mask.any():
        return LungsBlack(float((img[field.mask] < BLACK).mean()), FIELD)
    body = _body(img)
    return None if body is None else LungsBlack(float((img[body] < BLACK).mean()), BODY)


def of_file(path) -> LungsBlack | None:
    """`lungs_black` of a slice file, on the lung field the lung finder gives it (core.data.imaging.read_slice's
    ImageReadError when it cannot be read)."""
    from core.data.imaging import read_slice
    from core.inputs.lungs import lung_field

    img = read_slice(path)
    return lungs_black(img, lung_field(img))


def readable(black: LungsBlack | None) -> bool:
    """False when the lungs are black; a slice all black is left to the image checks."""
    return black is None or black.readable

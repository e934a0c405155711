"""A trained run, loaded for new slices: every branch's probability, the tau crop, the lesion boxes.

    tr = TrainedRun.load("runs/lite0")
    a = tr.analyse(read_slice("slice.dcm"))        # SliceAnalysis
    a2 = tr.rescore_tau(a, 0.6)                    # a new tau: new crop, heatmap and fusion re-scored

Used by `python -m train predict` and by the dashboard (tau slider, new-slice upload).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.config import PipelineConfig
from core.explain.attention import threshold_box
from core.explain.cams import make_cam
from core.explain.fusion_cam import fusion_cam
from core.inputs.boxes import Box, crop
from core.inputs.fields import FieldFinder
from core.inputs.harmonise import harmonise
from core.inputs.lesion_crops import lesion_crops
from core.inputs.lesion_maps import lesion_map_u8
from core.inputs.lungs import LungField
from core.knowledge.decision import Factors, TwoStepDecision
from core.knowledge.lung_window import LungsBlack, lungs_black
from core.knowledge.signs import SIGNS, Signs, signs_in_frame
from core.models import network
from core.models.segmenter import load_segmenter, segment
from core.runs.checkpoint import load_checkpoint
from core.runs.runfolder import RunFolder


@dataclass
class SliceAnalysis:
    image: np.ndarray  # (S, S) float [0, 1], the slice as the run sees it (core.inputs.harmonise) at the working size
    hires: np.ndarray  # (Sh, Sh) float [0, 1], the same at the crops' size
    lung: np.ndarray  # (S, S) bool, the lung field in that frame
    frame: Box  # where the frame lies on the original slice
    lung_found: bool  # False: no lung field found, the whole slice was used
    field_on_slice: LungField  # the lung field on the original slice (edits of the slice keep it)
    attention: np.ndarray  # (S, S) attention map (Eq. 1 or the run's CAM method) in [0, 1]
    tau: float
    box: Box  # heatmap crop box
    box_empty: bool
    lesion_prob: np.ndarray  # (Sg, Sg) lesion probability
    lesion_boxes: list[Box]
    side_boxes: dict  # side -> Box | None
    vectors: dict = field(repr=False, default_factory=dict)  # the fusion input (core.models.network.vectors)
    inputs: dict = field(repr=False, default_factory=dict)  # branch inputs (crops, boxes) for the fusion CAM
    probs: dict = field(default_factory=dict)  # branch -> probability
    signs: Signs | None = None  # the radiological signs (core.knowledge.signs)
    factors: Factors | None = None  # the two-step decision's two factors, when the run has that decision
    lungs_black: LungsBlack | None = None  # how black its lungs are (core.knowledge.lung_window)

    def to_json(self) -> dict:
        return {"probabilities": {k: round(float(v), 6) for k, v in self.probs.items()},
                "tau": self.tau, "heatmap_box": [round(v, 4) for v in self.box.as_list()],
                "heatmap_box_is_whole_slice": self.box_empty,
                "lesion_boxes": [[round(v, 4) for v in b.as_list()] for b in self.lesion_boxes],
                "lung_crops": {s: (None if b is None else [round(v, 4) for v in b.as_list()])
                               for s, b in self.side_boxes.items()},
                "input": {"frame_box": [round(v, 4) for v in self.frame.as_list()], "lung_field_found": self.lung_found,
                          "lungs_black": None if self.lungs_black is None else self.lungs_black.to_json()},
                **({} if self.signs is None else {"signs": {k: _rounded(v) for k, v in self.signs.to_dict().items()
                                                            if k in SIGNS}}),
                **({} if self.factors is None else {"two_step": {"disease_present": round(self.factors.disease, 6),
                                                                 "looks_like_covid": round(self.factors.pattern, 6)}}),
                "box_format": "[y0, x0, y1, x1] as fractions of the frame's height/width (frame_box: of the slice's)"}


def _rounded(v):
    v = float(v)
    return None if v != v else round(v, 6)  # NaN (no lone-slice lower zone) -> null


def quantise8(img: np.ndarray) -> np.ndarray:
    """A float image rounded to 8 bits, as the pipeline's cached frames are."""
    return np.round(np.clip(img, 0, 1) * 255).astype(np.float32) / 255


def crop8(image: np.ndarray, box: Box, size: int) -> torch.Tensor:
    """(1, 1, size, size): a crop quantised to 8 bits, as the pipeline caches its crops."""
    return ((crop(image, box, size) * 255).round() / 255)[None, None]


def branch_inputs(cfg: PipelineConfig, image: torch.Tensor, hires: list[np.ndarray], box: Box, sides: dict,
                  device) -> dict:
    """Every branch's model inputs of B slices whose routing is given, what core.models.network.vectors and
    core.explain.fusion_cam read: `image` (B, 1, S, S) the slices at the working size, `hires` the same slices
    at the crops' size, `box` the tau crop's box, `sides` each lung's lesion box (SIDES' names; None: no lesion
    on that side). A live analysis routes each slice itself; the trust checks hold one slice's routing while
    they perturb it (core.explain.fidelity.routed_inputs)."""
    n, ls = len(hires), cfg.lesion_size
    side_boxes = [sides[s.name] for s in network.SIDES]
    batch = {"image": image, "crop": torch.cat([crop8(h, box, cfg.image_size) for h in hires]),
             **{s.crop: (torch.cat([crop8(h, b, ls) for h in hires]) if b is not None else torch.zeros(n, 1, ls, ls))
                for s, b in zip(network.SIDES, side_boxes)},
             network.PRESENT: torch.tensor([[b is not None for b in side_boxes]], dtype=torch.float32).expand(n, -1)}
    boxes = {"crop_box": torch.tensor([box.as_list()]).expand(n, -1),
             "side_boxes": torch.tensor([[(b or Box(0, 0, 0, 0)).as_list() for b in side_boxes]]).expand(n, -1, -1)}
    return {**{k: v.to(device) for k, v in batch.items()}, **boxes}


def _tensor(img: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None].to(device)


@dataclass
class LesionAnalysis:
    """What a run's segmenter alone finds on one slice (read_lesions): the first half of TrainedRun.analyse, and
    all a scan's lesion burden needs (core.knowledge.scan.slice_row reads probs, factors, signs, frame and lung)."""
    image: np.ndarray  # (S, S) the slice as the run sees it, at the working size, 8-bit
    hires: np.ndarray  # (Sh, Sh) the same at the crops' size
    lung: np.ndarray  # (S, S) bool, the lung field in that frame
    frame: Box  # where the frame lies on the original slice
    lung_found: bool
    field_on_slice: LungField
    lesion_prob: np.ndarray  # (Sg, Sg) lesion probability
    signs: Signs
    probs: dict  # the lesion-share baseline, the one score a segmenter gives
    lungs_black: LungsBlack | None = None  # how black its lungs are (core.knowledge.lung_window)
    factors: None = None  # no decision without the classifiers


@torch.no_grad()
def read_lesions(cfg: PipelineConfig, fields: FieldFinder, segmenter, slice01: np.ndarray, device,
                 field: LungField | None = None) -> LesionAnalysis:
    """One (H, W) slice in [0, 1] prepared as the run was trained (its `input` mode; the lung field `field` when
    given, else `fields`'), through its segmenter, and the radiological signs of what it finds. Images are quantised
    to 8 bits as the training pipeline's frames are, so a slice scores as it did there."""
    field = fields(slice01) if field is None else field
    small = harmonise(slice01, cfg.input, cfg.image_size, field)
    hires = quantise8(harmonise(slice01, cfg.input, cfg.hires_size, field).image)
    seg_in = torch.nn.functional.interpolate(_tensor(hires, device), size=(cfg.seg.size,) * 2, mode="bilinear",
                                             antialias=True, align_corners=False)
    lesion = segment(segmenter, seg_in, device=device, **cfg.seg.inference)[0, 0].numpy()
    # the signs (and the lesion-share baseline, their first) on the lesion map as a run stores it
    stored = lesion_map_u8(torch.from_numpy(np.ascontiguousarray(lesion, dtype=np.float32))[None])[0].numpy()
    signs = signs_in_frame(slice01, small.box, small.lung, stored, small.found)
    return LesionAnalysis(image=quantise8(small.image), hires=hires, lung=small.lung, frame=small.box,
                          lung_found=small.found, field_on_slice=field, lesion_prob=lesion, signs=signs,
                          probs={"lesion-share": signs.lesion_share}, lungs_black=lungs_black(slice01, field))


class LesionReader:
    """A run's segmenter alone, before its classifiers exist: the final one, or while its stage trains the model
    after its last finished round (core.pictures.data_views.lesion_source). `analyse` is TrainedRun's first half,
    so a scan's lesion burden (core.knowledge.scan.score_volume) is measured as the finished run will measure it."""

    def __init__(self, cfg: PipelineConfig, fields: FieldFinder, segmenter, device="cpu"):
        self.cfg, self.fields, self.device = cfg, fields, torch.device(device)
        self.segmenter = segmenter.eval().to(self.device)

    def analyse(self, slice01: np.ndarray) -> LesionAnalysis:
        return read_lesions(self.cfg, self.fields, self.segmenter, slice01, self.device)


class TrainedRun:
    def __init__(self, run: RunFolder, cfg: PipelineConfig, models: dict, device="cpu"):
        self.run, self.cfg, self.m, self.device = run, cfg, models, torch.device(device)
        self.fields = FieldFinder.of_run(run, cfg, device)  # how a slice's lung field is found for this run
        self.two_step = TwoStepDecision.of_run(run)  # None until the run's two-step stage has been fitted

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> TrainedRun:
        run = RunFolder(path)
        cfg = PipelineConfig.of_run(run)
        missing = [s for s in network.STAGES if not (run.stage(s) / "best.pt").exists()]
        if missing:
            raise FileNotFoundError(f"{run.path}: stages not trained yet: {', '.join(missing)}")
        ckpt = {stage: load_checkpoint(run.stage(stage) / "best.pt") for stage in network.BY_STAGE}
        m = network.build(cfg, ckpt["fusion"]["sizes"], init="scratch")  # the fusion input's sizes, as trained
        for stage, model in m.items():
            model.load_state_dict(ckpt[stage]["model"])
            model.eval().to(device)
        m[network.SEGMENTER] = load_segmenter(run.stage(network.SEGMENTER) / "best.pt").eval().to(device)
        return cls(run, cfg, m, device)

    @torch.no_grad()
    def analyse(self, slice01: np.ndarray, tau: float | None = None, field: LungField | None = None) -> SliceAnalysis:
        """Run the whole trained pipeline on one (H, W) slice in [0, 1], prepared as the run was trained
        (its `input` mode; the lung field `field` when given, else the run's FieldFinder's). Images are quantised
        to 8 bits as the training pipeline's frames are, so a slice scores as it did there."""
        cfg = self.cfg
        le = read_lesions(cfg, self.fields, self.m[network.SEGMENTER], slice01, self.device, field)
        x = _tensor(le.image, self.device)
        with make_cam(cfg.cam, self.m["global"]) as cam:
            attention = cam(x).float().cpu()[0].numpy()  # at the working size, as the pipeline upsamples its cache
        lc = lesion_crops(le.lesion_prob)
        inputs = {"image": x}  # the rest once tau has cut its crop (rescore_tau)
        a = SliceAnalysis(image=le.image, hires=le.hires, lung=le.lung, frame=le.frame, lung_found=le.lung_found,
                          field_on_slice=le.field_on_slice, attention=attention, tau=cfg.tau, box=Box(0, 0, 1, 1),
                          box_empty=True, lesion_prob=le.lesion_prob, lesion_boxes=lc.lesions, side_boxes=lc.sides,
                          inputs=inputs, signs=le.signs, probs=dict(le.probs), lungs_black=le.lungs_black)
        return self.rescore_tau(a, cfg.tau if tau is None else tau)

    @torch.no_grad()
    def rescore_tau(self, a: SliceAnalysis, tau: float) -> SliceAnalysis:
        """A new tau: threshold, largest region, crop, heatmap branch and the heads that use it. The vectors a
        tau leaves alone (global, lungs) are computed on the first call and kept."""
        hc = threshold_box(a.attention, tau)
        inputs = branch_inputs(self.cfg, a.inputs["image"], [a.hires], hc.box, a.side_boxes, self.device)
        kept = {k: v for k, v in a.vectors.items() if k not in network.TAU_KEYS}
        v = network.vectors(self.m, {**inputs, **kept})
        probs = {name: float(torch.sigmoid(logit).flatten()[0]) for name, logit in network.logits(self.m, v).items()}
        probs.update({k: p for k, p in a.probs.items() if k not in probs})  # the baselines
        factors = None
        if self.two_step is not None:  # its second step reads a classifier's probability, which tau may change
            factors = self.two_step.factors_of(probs[self.two_step.pattern_branch], a.signs)
            probs[TwoStepDecision.name] = factors.p
        return replace(a, tau=tau, box=hc.box, box_empty=hc.empty, vectors=v, probs=probs, inputs=inputs,
                       factors=factors)

    def tau_changes(self) -> tuple[str, ...]:
        """The probabilities rescore_tau changes: the branches whose heads read the tau crop's vector, and the
        two-step decision when its second step reads one of them. The others keep their stored values."""
        two_step = self.two_step is not None and self.two_step.pattern_branch in network.TAU_BRANCHES
        return (*network.TAU_BRANCHES, *((TwoStepDecision.name,) if two_step else ()))

    def fusion_cam(self, a: SliceAnalysis, size: int = 112) -> np.ndarray:
        """The fusion decision's CAM on the slice (core.explain.fusion_cam)."""
        return fusion_cam(self.m, a.inputs, size)[0].numpy()

    def fusion_vector(self, a: SliceAnalysis) -> np.ndarray:
        """The standardised fusion-layer input of a slice (what the 3D map embeds)."""
        return self.m["fusion"].standardised(a.vectors).detach().cpu().numpy()[0]

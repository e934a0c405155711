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

from .attention import Box, crop, threshold_box, upsample_maps
from .backbones import build_backbone
from .branches import InfectedClassifier, VectorHead
from .cams import make_cam, weighted_cam
from .checkpoint import load_checkpoint
from .image_cache import resize01
from .lesion_crops import SIDES, lesion_crops
from .models import SliceClassifier
from .pipeline import PipelineConfig
from .runfolder import RunFolder


@dataclass
class SliceAnalysis:
    image: np.ndarray  # (S, S) float [0, 1], the slice at the working size
    hires: np.ndarray  # (Sh, Sh) float [0, 1], crops are cut from it
    attention: np.ndarray  # (S, S) attention map (Eq. 1 or the run's CAM method) in [0, 1]
    tau: float
    box: Box  # heatmap crop box
    box_empty: bool
    lesion_prob: np.ndarray  # (Sg, Sg) lesion probability
    lesion_boxes: list[Box]
    side_boxes: dict  # side -> Box | None
    vectors: dict = field(repr=False, default_factory=dict)  # pooled vectors (1, K) of each branch
    inputs: dict = field(repr=False, default_factory=dict)  # branch inputs (crops, boxes) for the fusion CAM
    probs: dict = field(default_factory=dict)  # branch -> probability

    def to_json(self) -> dict:
        return {"probabilities": {k: round(float(v), 6) for k, v in self.probs.items()},
                "tau": self.tau, "heatmap_box": [round(v, 4) for v in self.box.as_list()],
                "heatmap_box_is_whole_slice": self.box_empty,
                "lesion_boxes": [[round(v, 4) for v in b.as_list()] for b in self.lesion_boxes],
                "lung_crops": {s: (None if b is None else [round(v, 4) for v in b.as_list()])
                               for s, b in self.side_boxes.items()},
                "box_format": "[y0, x0, y1, x1] as fractions of the slice height/width"}


class TrainedRun:
    def __init__(self, run: RunFolder, cfg: PipelineConfig, models: dict, device="cpu"):
        self.run, self.cfg, self.m, self.device = run, cfg, models, torch.device(device)

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> "TrainedRun":
        run = RunFolder(path)
        cfg_dict = run.config.get("pipeline")
        if not cfg_dict:
            raise FileNotFoundError(f"{run.path}: no pipeline configuration; train it with `python -m train pipeline`")
        cfg = PipelineConfig(**cfg_dict)
        missing = [s for s in ("global", "heatmap", "infnet", "infected", "global+heatmap", "fusion")
                   if not (run.stage(s) / "best.pt").exists()]
        if missing:
            raise FileNotFoundError(f"{run.path}: stages not trained yet: {', '.join(missing)}")

        def weights(stage):
            return load_checkpoint(run.stage(stage) / "best.pt")["model"]

        def backbone():
            return build_backbone(cfg.backbone, "scratch")

        m = {"global": SliceClassifier(backbone()), "heatmap": SliceClassifier(backbone(), key="crop")}
        k = m["global"].backbone.num_features
        m["infected"] = InfectedClassifier(backbone(), k)
        m["global+heatmap"] = VectorHead({"g": k, "h": k})
        m["fusion"] = VectorHead({"g": k, "h": k, "r": k, "l": k, "present": 2})
        for name, model in m.items():
            model.load_state_dict(weights(name))
            model.eval().to(device)
        from .segmentation import load_segmenter

        m["infnet"] = load_segmenter(run.stage("infnet") / "best.pt").eval().to(device)
        return cls(run, cfg, m, device)

    def _t(self, img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None].to(self.device)

    @torch.no_grad()
    def analyse(self, slice01: np.ndarray, tau: float | None = None) -> SliceAnalysis:
        """Run the whole trained pipeline on one (H, W) slice in [0, 1]."""
        from .segmentation import segment

        cfg = self.cfg
        image = resize01(slice01, cfg.image_size)
        hires = resize01(slice01, cfg.hires_size)
        g = self.m["global"]
        x = self._t(image)
        with make_cam(cfg.cam, g) as cam:
            amap = cam(x).float()
        attention = upsample_maps(amap.cpu(), cfg.image_size)[0].numpy()
        gvec = g.embed({"image": x}).float()
        lesion = segment(self.m["infnet"], self._t(resize01(slice01, cfg.seg["size"])), device=self.device,
                         tta=cfg.seg.get("tta", False))[0, 0].numpy()
        lc = lesion_crops(lesion)
        side = {}
        for s in SIDES:
            b = lc.sides[s]
            side[s] = crop(hires, b, cfg.lesion_size)[None, None] if b is not None else torch.zeros(1, 1, cfg.lesion_size, cfg.lesion_size)
        present = torch.tensor([lc.present], dtype=torch.float32)
        inf_in = {"right": side[SIDES[0]].to(self.device), "left": side[SIDES[1]].to(self.device),
                  "present": present.to(self.device), "g": gvec}
        lr = self.m["infected"].crop_vectors(inf_in)
        a = SliceAnalysis(image=image, hires=hires, attention=attention, tau=cfg.tau, box=Box(0, 0, 1, 1),
                          box_empty=True, lesion_prob=lesion, lesion_boxes=lc.lesions, side_boxes=lc.sides,
                          vectors={"g": gvec, "r": lr[:, 0], "l": lr[:, 1], "present": present.to(self.device)},
                          inputs={"image": x, "right": inf_in["right"], "left": inf_in["left"], "present": present,
                                  "side_boxes": torch.tensor([[(b or Box(0, 0, 0, 0)).as_list() for b in
                                                               (lc.sides[s] for s in SIDES)]])})
        a.probs = {"global": float(torch.sigmoid(g.fc(gvec))[0, 0]),
                   "global+infected": float(torch.sigmoid(self.m["infected"](inf_in))[0])}
        return self.rescore_tau(a, cfg.tau if tau is None else tau)

    @torch.no_grad()
    def rescore_tau(self, a: SliceAnalysis, tau: float) -> SliceAnalysis:
        """A new tau: threshold, largest region, crop, heatmap branch and the heads that use it."""
        hc = threshold_box(a.attention, tau)
        c = crop(a.hires, hc.box, self.cfg.image_size)[None, None].to(self.device)
        h = self.m["heatmap"]
        hvec = h.embed({"crop": c}).float()
        vectors = {**a.vectors, "h": hvec}
        probs = dict(a.probs)
        probs["heatmap"] = float(torch.sigmoid(h.fc(hvec))[0, 0])
        probs["global+heatmap"] = float(torch.sigmoid(self.m["global+heatmap"](vectors))[0])
        probs["fusion"] = float(torch.sigmoid(self.m["fusion"](vectors))[0])
        inputs = {**a.inputs, "crop": c, "crop_box": torch.tensor([hc.box.as_list()])}
        return replace(a, tau=tau, box=hc.box, box_empty=hc.empty, vectors=vectors, probs=probs, inputs=inputs)

    def fusion_cam(self, a: SliceAnalysis, size: int = 112) -> np.ndarray:
        """The fusion decision's CAM on the slice (core.fusion_cam)."""
        from .fusion_cam import fusion_cam

        return fusion_cam(self.m, a.inputs, size)[0].numpy()

    def fusion_vector(self, a: SliceAnalysis) -> np.ndarray:
        """The standardised fusion-layer input of a slice (what the 3D map embeds)."""
        return self.m["fusion"].standardised(a.vectors).detach().cpu().numpy()[0]

    @torch.no_grad()
    def global_cam(self, a: SliceAnalysis) -> np.ndarray:
        """Zhou et al. CAM of the global branch at the working size (for a quick overlay)."""
        g = self.m["global"]
        fmap = g.backbone.features(self._t(a.image))
        return upsample_maps(weighted_cam(fmap, g.fc.weight[0]).cpu(), self.cfg.image_size)[0].numpy()

"""A branch's decision and map as Quantus randomises and perturbs them.

Quantus (0.6) wraps an nn.Module, reads its output as class scores (here [0, logit]: its softmax's second
entry is the sigmoid, P(COVID)), asks an explain function for maps, and for the randomisation test
re-initialises, top down, every module of the model that has `reset_parameters`. A backbone has ~100 such
layers; re-explaining after each is out of reach on a CPU, so these wrappers show Quantus one `Unit` per
block instead: the real modules are held outside the module tree (Quantus's deepcopy still copies them), and
a unit's `reset_parameters` re-initialises all of its block's layers at once.

BranchModel  one SliceClassifier (the global branch) on its own input; units: its backbone's blocks, then its
             FC layer.
FusionModel  the run's decision branch: the whole pipeline on the slice at its original size, with the routing
             (lung field, heatmap box, lung crop boxes, lesion flags) held as found on the intact slice
             (core.explain.fidelity.routed_inputs), its map TrainedRun.fusion_cam's, placed on the slice.
             Units: the fusion layer, then, top down, each depth of the three backbones it reads (global,
             heatmap, infected) at once.

Both explain with `explain(inputs, method, seed)`: a CAM method (core.explain.cams) or the fusion CAM, or a
baseline (core.trust.baselines) over the same input, plus the slice's tie-break.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.explain.cams import CAM_METHODS, make_cam
from core.explain.fidelity import on_slice, routed_inputs, routed_logit
from core.explain.fusion_cam import fusion_cam
from core.inputs.boxes import FULL
from core.models.network import IMAGE_STAGES
from core.trust.baselines import BASELINES, baseline_map, tie_break

FUSION_CAM = "fusion-cam"
FUSION_PARTS = (*IMAGE_STAGES, "fusion")  # the run's models the decision branch reads
PROBE_SIDE = 64  # a dummy input's side, to see which blocks a backbone's forward pass runs, in order


class Unit(nn.Module):
    """Layers Quantus re-initialises as one: they sit outside the module tree, so Quantus sees this unit."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        object.__setattr__(self, "parts", list(parts))  # not registered: Quantus must not reset them one by one

    def reset_parameters(self) -> None:
        for part in self.parts:
            for m in part.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def backbone_blocks(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) of a core.models.backbones.Backbone, bottom up: below single-child wrappers, the children
    with parameters (lists expanded) that its forward pass runs, in the order it runs them (an unused head,
    such as EfficientNet-Lite's ImageNet classifier, is left out)."""
    node, prefix = backbone.trunk, "trunk"
    while True:
        kids = [(n, c) for n, c in node.named_children() if _has_params(c)]
        if len(kids) != 1:
            break
        prefix, node = f"{prefix}.{kids[0][0]}", kids[0][1]
    candidates = {}
    for n, c in node.named_children():
        if isinstance(c, nn.ModuleList):
            candidates.update({f"{n}.{i}": cc for i, cc in enumerate(c) if _has_params(cc)})
        elif _has_params(c):
            candidates[n] = c
    ran: list[str] = []
    hooks = [c.register_forward_hook(lambda *_, name=n: ran.append(name)) for n, c in candidates.items()]
    try:
        p = next(backbone.parameters())
        with torch.no_grad():
            backbone.features(torch.zeros(1, 1, PROBE_SIDE, PROBE_SIDE, device=p.device, dtype=p.dtype))
    finally:
        for hk in hooks:
            hk.remove()
    return [(n, candidates[n]) for n in dict.fromkeys(ran)]


def two_class(logit: torch.Tensor) -> torch.Tensor:
    """(B,) logit -> (B, 2) scores [0, logit]: softmax gives [1 - p, p], p = sigmoid(logit) = P(COVID)."""
    logit = logit.reshape(-1).float()
    return torch.stack([torch.zeros_like(logit), logit], 1)


class Explained(nn.Module):
    """What both wrappers share: units for Quantus (bottom up), class scores, maps."""

    methods: tuple[str, ...] = ()

    def __init__(self, units: list[tuple[str, list[nn.Module]]], image_size: int):
        super().__init__()
        # ModuleDict keys cannot hold dots; Quantus names a unit by its key
        self.units = nn.ModuleDict({name.replace(".", ":"): Unit(parts) for name, parts in units})
        self.image_size = image_size
        self.eval()

    def unit_names(self, top_down: bool = True) -> list[str]:
        names = list(self.units)
        return names[::-1] if top_down else names

    def method_map(self, x: torch.Tensor, method: str) -> np.ndarray:
        """(B, H, W) map of a method over the input x (B, 1, H, W)."""
        raise NotImplementedError

    def support(self, h: int, w: int) -> np.ndarray | None:
        """(h, w) where the branch's maps can be non-zero on its input, or None: everywhere."""
        return None

    def explain(self, inputs: np.ndarray, method: str, seed: int) -> np.ndarray:
        """(B, 1, H, W) input -> (B, 1, H, W) map of `method` (or a baseline), with the slice's tie-break."""
        x = torch.as_tensor(np.asarray(inputs, np.float32))
        b, _, h, w = x.shape
        if method in BASELINES:
            maps = np.stack([baseline_map(method, x[i, 0].numpy(), seed, self.image_size) for i in range(b)])
            keep = self.support(h, w)
            if keep is not None:
                maps = maps * keep
        elif method in self.methods:
            maps = self.method_map(x, method)
        else:
            raise ValueError(f"{type(self).__name__} draws no map {method!r}; "
                             f"choose one of {', '.join(self.methods + BASELINES)}")
        return (np.asarray(maps, np.float32) + tie_break(h, w, seed))[:, None]


class BranchModel(Explained):
    """One SliceClassifier on its own input (the global branch: the frame the run feeds it)."""

    methods = tuple(CAM_METHODS)

    def __init__(self, classifier: nn.Module, image_size: int):
        blocks = backbone_blocks(classifier.backbone)
        super().__init__([(n, [m]) for n, m in blocks] + [("fc", [classifier.fc])], image_size)
        object.__setattr__(self, "classifier", classifier.eval())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.classifier.parameters()).device
        return two_class(self.classifier({self.classifier.key: x.to(dev)}))

    def method_map(self, x, method):
        dev = next(self.classifier.parameters()).device
        with make_cam(method, self.classifier) as cam:
            return cam(x.to(dev)).float().detach().cpu().numpy()


class FusionModel(Explained):
    """The decision branch on one slice at its original size, routing held as found on the intact slice `a`."""

    methods = (FUSION_CAM,)

    def __init__(self, tr, a):
        models = {k: tr.m[k] for k in FUSION_PARTS}
        levels = [backbone_blocks(models[k].backbone) for k in IMAGE_STAGES]
        depth = min(len(lv) for lv in levels)
        units = [(levels[0][i][0], [lv[i][1] for lv in levels]) for i in range(depth)]
        super().__init__(units + [("fusion.fc", [models["fusion"].fc])], tr.cfg.image_size)
        object.__setattr__(self, "models", models)
        self.cfg, self.analysis, self.device = tr.cfg, a, tr.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return two_class(routed_logit(self.models, routed_inputs(self.cfg, self.analysis, x, self.device)))

    def method_map(self, x, method):
        batch = routed_inputs(self.cfg, self.analysis, x, self.device)
        cams = fusion_cam(self.models, batch, self.image_size).numpy()
        h, w = x.shape[-2:]
        return np.stack([on_slice(c, self.analysis.frame, h, w) for c in cams])

    def support(self, h, w):
        """The frame on the slice: the fusion CAM lives there, so its baselines do too."""
        if self.analysis.frame == FULL:
            return None
        return on_slice(np.ones((self.image_size, self.image_size), np.float32), self.analysis.frame, h, w) > 0

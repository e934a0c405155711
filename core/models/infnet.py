"""Inf-Net-style lung-infection segmenter (Fan et al., IEEE TMI 2020), small enough for a CPU.

Layout, as in Inf-Net but over any `Backbone` trunk (default EfficientNet-Lite0, ImageNet init):

    encoder taps  f1 (stride 4), f2 (8), f3 (16), f4 (32)      -- last block at each resolution
    edge head     f1 -> edge features E (stride 4) -> edge logits          (edge attention, supervised)
    partial dec.  RFB(f2), RFB(f3), RFB(f4) -> parallel partial decoder -> coarse map S5 (stride 8)
    reverse att.  RA4(f4, S5) -> S4, RA3(f3, S4) -> S3, RA2(f2, S3) -> S2, RA1(f1, S2) -> S1
                  each: features * (1 - sigmoid(previous map)), concatenated with E, a few convs,
                  then added to the previous map (residual refinement, deep to shallow).

Inf-Net stops at stride 8 (S2); the extra stride-4 step RA1 is ours and sharpens lesion borders at
the small input sizes a CPU affords. `forward` returns every map for deep supervision, upsampled
to the input size, coarse to fine: {"mask": [S5, S4, S3, S2, S1], "edge": edge logits}.
Probabilities: sigmoid(out["mask"][-1]).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.models.backbones import LITE, Backbone, build_backbone


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, dilation=1):
        super().__init__(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, like: torch.Tensor | tuple) -> torch.Tensor:
    size = like.shape[-2:] if isinstance(like, torch.Tensor) else like
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RFB(nn.Module):
    """Receptive-field block (Inf-Net's RFB_modified, slimmed): 1x1 plus three dilated 3x3 branches."""

    def __init__(self, cin, cout):
        super().__init__()
        self.b0 = ConvBNReLU(cin, cout, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(ConvBNReLU(cin, cout, 1), ConvBNReLU(cout, cout, 3, dilation=d)) for d in (3, 5, 7))
        self.cat = ConvBNReLU(4 * cout, cout, 3)
        self.res = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        y = torch.cat([self.b0(x)] + [b(x) for b in self.branches], 1)
        return F.relu(self.cat(y) + self.res(x))


class PartialDecoder(nn.Module):
    """Inf-Net's parallel partial decoder over the three deepest levels (all with `c` channels)."""

    def __init__(self, c):
        super().__init__()
        self.up1, self.up2, self.up3, self.up4 = (ConvBNReLU(c, c) for _ in range(4))
        self.up5 = ConvBNReLU(2 * c, 2 * c)
        self.cat2 = ConvBNReLU(2 * c, 2 * c)
        self.cat3 = ConvBNReLU(3 * c, 3 * c)
        self.conv4 = ConvBNReLU(3 * c, 3 * c)
        self.out = nn.Conv2d(3 * c, 1, 1)

    def forward(self, x4, x3, x2):  # strides 32, 16, 8
        x3_1 = self.up1(_resize(x4, x3)) * x3
        x2_1 = self.up2(_resize(x4, x2)) * self.up3(_resize(x3, x2)) * x2
        x3_2 = self.cat2(torch.cat([x3_1, self.up4(_resize(x4, x3))], 1))
        x2_2 = self.cat3(torch.cat([x2_1, self.up5(_resize(x3_2, x2))], 1))
        return self.out(self.conv4(x2_2))


class ReverseAttention(nn.Module):
    """Refine a coarser map with one encoder level: erase what is already found, look at the rest."""

    def __init__(self, cin, c, edge_c):
        super().__init__()
        self.proj = ConvBNReLU(cin, c, 1)
        self.body = nn.Sequential(ConvBNReLU(c + edge_c, c), ConvBNReLU(c, c))
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, feat, prev_logits, edge_feat):
        prev = _resize(prev_logits, feat)
        rev = 1 - torch.sigmoid(prev)
        x = self.proj(feat) * rev
        x = torch.cat([x, _resize(edge_feat, feat)], 1)
        return self.out(self.body(x)) + prev


class Taps(nn.Module):
    """Multi-scale features of a `Backbone` trunk: the last output at strides 4, 8, 16 and 32."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.kind = "lite" if backbone.name in LITE else ("resnet" if backbone.name.startswith("resnet") else "densenet")
        was = backbone.training
        backbone.eval()
        with torch.no_grad():
            feats = self(torch.zeros(1, 1, 64, 64))
        backbone.train(was)
        if [f.shape[-1] for f in feats] != [16, 8, 4, 2]:
            raise ValueError(f"{backbone.name}: could not find features at strides 4/8/16/32")
        self.channels = [f.shape[1] for f in feats]

    def _stages(self):
        t = self.backbone.trunk
        if self.kind == "lite":
            net = t.net
            n = len(net._blocks)
            rate = net._global_params.drop_connect_rate or 0.0
            yield lambda x: net._swish(net._bn0(net._conv_stem(x)))
            for i, block in enumerate(net._blocks):
                yield (lambda b, r: (lambda x: b(x, drop_connect_rate=r)))(block, rate * i / n)
        elif self.kind == "resnet":
            yield from t.children()
        else:  # DenseNet: the final norm must be followed by the ReLU the trunk adds
            for name, m in t.body.named_children():
                yield (lambda m: (lambda x: F.relu(m(x))))(m) if name == "norm5" else m

    def forward(self, grey01):
        x = self.backbone.normalise(grey01)
        h = x.shape[-1]
        by_stride: dict[int, torch.Tensor] = {}
        for stage in self._stages():
            x = stage(x)
            stride = round(h / x.shape[-1])
            if stride in (4, 8, 16, 32):
                by_stride[stride] = x  # keep the last (deepest) output at each stride
        return [by_stride[s] for s in (4, 8, 16, 32)]


class InfNet(nn.Module):
    """forward(x (B,1,H,W) in [0,1]) -> {"mask": [5 logit maps, coarse to fine], "edge": logits},
    every map (B,1,H,W). H and W should be multiples of 32."""

    def __init__(self, encoder: str = "efficientnet_lite0", init: str = "imagenet", channels: int = 32,
                 ra_channels: int = 48, edge_channels: int = 32):
        super().__init__()
        self.config = {"encoder": encoder, "channels": channels, "ra_channels": ra_channels,
                       "edge_channels": edge_channels}
        self.encoder = Taps(build_backbone(encoder, init))
        c1, c2, c3, c4 = self.encoder.channels
        self.edge_feat = nn.Sequential(ConvBNReLU(c1, edge_channels, 1), ConvBNReLU(edge_channels, edge_channels),
                                       ConvBNReLU(edge_channels, edge_channels))
        self.edge_out = nn.Conv2d(edge_channels, 1, 3, padding=1)
        self.rfb2, self.rfb3, self.rfb4 = RFB(c2, channels), RFB(c3, channels), RFB(c4, channels)
        self.pd = PartialDecoder(channels)
        self.ra4 = ReverseAttention(c4, ra_channels, edge_channels)
        self.ra3 = ReverseAttention(c3, ra_channels, edge_channels)
        self.ra2 = ReverseAttention(c2, ra_channels, edge_channels)
        self.ra1 = ReverseAttention(c1, ra_channels, edge_channels)

    def forward(self, x: torch.Tensor) -> dict:
        f1, f2, f3, f4 = self.encoder(x)
        e = self.edge_feat(f1)
        s5 = self.pd(self.rfb4(f4), self.rfb3(f3), self.rfb2(f2))
        s4 = self.ra4(f4, s5, e)
        s3 = self.ra3(f3, s4, e)
        s2 = self.ra2(f2, s3, e)
        s1 = self.ra1(f1, s2, e)
        size = x.shape[-2:]
        return {"mask": [_resize(s, size) for s in (s5, s4, s3, s2, s1)],
                "edge": _resize(self.edge_out(e), size)}

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x)["mask"][-1].float())

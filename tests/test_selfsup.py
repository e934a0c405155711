"""Self-Trans initialisation: the loss, resumable pre-training, and use as --init."""
import torch

from core.models.backbones import build_backbone
from core.training.selfsup import nt_xent, pretrain


def test_nt_xent_rewards_matching_views():
    z = torch.randn(8, 16)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16)) < nt_xent(z, torch.randn(8, 16))


def test_pretraining_resumes_and_initialises_a_backbone(tmp_path):
    images = (torch.rand(16, 1, 64, 64) * 255).to(torch.uint8)
    out = tmp_path / "selftrans.pt"
    quiet = dict(batch_size=8, progress=False, log=lambda m: None, precision="fp32")
    full = pretrain(images, tmp_path / "full.pt", epochs=2, **quiet)
    pretrain(images, out, epochs=1, **quiet)
    resumed = pretrain(images, out, epochs=2, **quiet)
    assert [round(h["loss"], 5) for h in resumed["history"]] == [round(h["loss"], 5) for h in full["history"]]
    bb = build_backbone("efficientnet_lite0", str(out))
    ref = build_backbone("efficientnet_lite0", "imagenet")
    changed = [not torch.equal(a, b) for a, b in zip(bb.state_dict().values(), ref.state_dict().values())]
    assert any(changed)

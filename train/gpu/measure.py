"""What a gpu-run measures on the machine: each backbone's training step time (the unit of every estimate)
and the GPU's utilisation while the jobs run."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time


class GpuSampler:
    """GPU utilisation every `period` s in a thread: torch.cuda.utilization (NVML) if it answers, else
    nvidia-smi, else "unavailable"."""

    def __init__(self, device, period: float = 1.0):
        import torch

        self.device, self.period, self.samples = device, period, []  # (t, util %, memory MiB)
        self._stop = threading.Event()
        self.method = "unavailable (no GPU)"
        if device.type != "cuda":
            return
        self.index = device.index or 0
        try:
            torch.cuda.utilization(self.index)
            self.method = "torch.cuda.utilization"
        except Exception:  # noqa: BLE001  (no NVML: any failure means "ask nvidia-smi")
            self.method = "nvidia-smi" if shutil.which("nvidia-smi") and self._smi() else "unavailable"

    def _smi(self):
        try:
            res = subprocess.run(["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], check=False, capture_output=True, text=True,
                                 timeout=5)
            util, mem = (float(v) for v in res.stdout.strip().splitlines()[0].split(","))
            return util, mem
        except Exception:  # noqa: BLE001  (nvidia-smi missing, failing or odd: no sample)
            return None

    def _read(self):
        import torch

        if self.method == "torch.cuda.utilization":
            free, total = torch.cuda.mem_get_info(self.index)
            return float(torch.cuda.utilization(self.index)), (total - free) / 2**20
        return self._smi()

    def _loop(self):
        while not self._stop.wait(self.period):
            s = self._read()
            if s is not None:
                self.samples.append((time.time(), *s))

    def start(self):
        if not self.method.startswith("unavailable"):
            threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self):
        self._stop.set()

    def mean(self, t0: float, t1: float) -> float | None:
        u = [s[1] for s in list(self.samples) if t0 <= s[0] <= t1]
        return round(sum(u) / len(u), 1) if u else None


def calibrate(backbones, image_size, batch_size, recipe_name, device, steps: int) -> dict[str, float]:
    """Seconds per training step of each backbone (batch, size, augmentation of the headline recipe,
    bf16, channels-last): the unit every estimate is made of."""
    import torch

    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.recipes import get_recipe
    from core.training.runtime import autocast
    from core.training.trainer import prepare

    r = get_recipe(recipe_name, batch_size=batch_size)
    out = {}
    for name in backbones:
        torch.manual_seed(0)
        model = SliceClassifier(build_backbone(name, "imagenet")).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randint(0, 256, (r.batch_size, 1, image_size, image_size), dtype=torch.uint8, device=device)
        y = (torch.arange(r.batch_size, device=device) % 2).float()
        gen = torch.Generator().manual_seed(0)
        model.train()
        t0 = 0.0
        for i in range(steps + 2):  # two warm-up steps (cuDNN picks its kernels)
            if i == 2:
                _sync(device)
                t0 = time.time()
            b = prepare({"image": x}, ("image",), device, True, gen, r.augment)
            with autocast("bf16", device):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        out[name] = (time.time() - t0) / max(1, steps)
        del model, opt
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)

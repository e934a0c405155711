"""Benchmarks: `make bench` (= python -m bench). Prints a Markdown table; writes bench-results/bench.json.

Each figure is the median of several runs; comparisons are ratios against a plain reference run
in the same process (never absolute timings judged against a constant):
  train-loop      our train_stage vs a bare PyTorch loop over the same batches (fp32, and bf16 asked)
  precision       a bare loop's step in bf16 autocast vs fp32 (bf16 runs only where it is faster)
  layout          a bare loop's step channels-last vs the default memory layout
  segmenter       one segmenter epoch in fp32 vs bf16 asked
  tau-slider      new tau -> threshold, largest region, crop (p50/p95); + heatmap/fusion re-score
  predict         one slice through the whole trained pipeline
  embedding       3D t-SNE and UMAP for 746 and 10,000 points
  dashboard       cold start of `streamlit run` to a served page; first AppTest render
  memory          peak resident memory of this process

    python -m bench                  # everything (about 10-15 minutes on 2 CPU cores)
    python -m bench --only tau,predict
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-results"
ROWS: list[dict] = []


def row(name, value, unit, note=""):
    ROWS.append({"benchmark": name, "value": value, "unit": unit, "note": note})
    print(f"  {name}: {value} {unit} {note}", flush=True)


def median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _random_slices(n, size):
    from core.data.slices import StageData

    gen = torch.Generator().manual_seed(0)
    return StageData({"image": (torch.rand(n, 1, size, size, generator=gen) * 255).to(torch.uint8)},
                     (torch.rand(n, generator=gen) > 0.5).float())


def _bare_loop(data, steps, batch, dtype=None, channels_last=False):
    """A plain PyTorch training loop over `data`; `dtype` bfloat16 forces autocast whatever the hardware;
    `channels_last`: the model and its inputs in that memory layout."""
    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier

    torch.manual_seed(0)
    model = SliceClassifier(build_backbone("efficientnet_lite0", "imagenet")).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)

    def run():
        for s in range(steps):
            x = (data.inputs["image"][s * batch:(s + 1) * batch].float() / 255).contiguous(memory_format=layout)
            y = data.labels[s * batch:(s + 1) * batch]
            ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with ctx:
                logits = model({"image": x}).float()
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


def bench_train_loop(steps=4, batch=32, size=224):
    from core.data.slices import StageData
    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.recipes import get_recipe
    from core.training.runtime import effective_precision
    from core.training.trainer import train_stage

    n = steps * batch
    data = _random_slices(n, size)
    val = StageData({"image": data.inputs["image"][:8]}, data.labels[:8])

    def ours(recipe):
        def run():
            torch.manual_seed(0)
            model = SliceClassifier(build_backbone("efficientnet_lite0", "imagenet"))
            tmp = OUT / "tmp-stage"
            train_stage(model, data, val, get_recipe(recipe, epochs=1, batch_size=batch, patience=0), tmp,
                        progress=False, log=lambda m: None)
        return run

    t_bare32 = median_time(_bare_loop(data, steps, batch))
    t_ours32 = median_time(ours("fast-fp32"))
    t_oursbf = median_time(ours("fast"))
    # ours includes model construction, augmentation, validation of 8 slices and checkpoint writes
    row("train-loop fp32: bare PyTorch", round(n / t_bare32, 2), "img/s")
    row("train-loop fp32: train_stage", round(n / t_ours32, 2), "img/s", f"ratio {t_bare32 / t_ours32:.2f} vs bare")
    row("train-loop bf16 asked: train_stage", round(n / t_oursbf, 2), "img/s",
        f"speed-up {t_bare32 / t_oursbf:.2f}x vs bare fp32; ran in {effective_precision('bf16', 'cpu')}")


def bench_precision(steps=2, batch=8):
    """bf16 autocast against fp32 in a bare loop, forced whatever the hardware: what
    core.training.runtime.native_bf16 decides from."""
    from core.training.runtime import native_bf16

    for size in (64, 224):
        data = _random_slices(steps * batch, size)
        t32 = median_time(_bare_loop(data, steps, batch))
        tbf = median_time(_bare_loop(data, steps, batch, torch.bfloat16))
        row(f"bf16 autocast step time / fp32, {size} px", round(tbf / t32, 2), "x",
            f"native bf16 on this CPU: {native_bf16(torch.device('cpu'))}")


def bench_layout(steps=2, batch=32):
    """A bare loop's step with the model and its inputs channels-last against the default layout: what
    core.training.recipes.Recipe.channels_last defaults to."""
    for size in (64, 224):
        data = _random_slices(steps * batch, size)
        plain = median_time(_bare_loop(data, steps, batch))
        last = median_time(_bare_loop(data, steps, batch, channels_last=True))
        row(f"channels-last step time / default layout, {size} px", round(last / plain, 2), "x", "fp32")


def bench_segmenter():
    """One segmenter epoch (Algorithm 1's training step) in fp32 (SegConfig's default) against bf16 asked."""
    from core.training.runtime import effective_precision
    from core.training.segmentation import build_segmenter, train_segmenter

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, 256, 256, generator=gen)
    masks = (torch.rand(16, 1, 256, 256, generator=gen) > 0.9).float()

    def seg(precision):
        return lambda: train_segmenter(images, masks, OUT / "tmp-seg", epochs=1, seed=0,
                                       model=build_segmenter(seed=0), batch_size=8, precision=precision,
                                       progress=False, log=lambda m: None)

    t32, tbf = median_time(seg("fp32")), median_time(seg("bf16"))
    row("segmenter epoch fp32", round(16 / t32, 2), "img/s")
    row("segmenter epoch bf16 asked", round(16 / tbf, 2), "img/s",
        f"speed-up {t32 / tbf:.2f}x; ran in {effective_precision('bf16', 'cpu')}")


def tiny_run() -> Path:
    """A full trained run on phantoms at the real working sizes (built once, cached)."""
    from core.config import PipelineConfig
    from core.data.phantom import write_dataset
    from core.pipeline import Pipeline
    from core.runs.migrate import migrate
    from core.runs.runfolder import RunFolder

    root = write_dataset(ROOT / ".cache" / "bench-phantoms", {"train": 12, "val": 6, "test": 6}, size=256)
    path = ROOT / ".cache" / "bench-runs" / "bench"
    if (path / "fusion" / "summary.json").exists():
        migrate(path)  # cached by an older version: brought up to today's format (a no-op when it is)
        return path
    run = RunFolder(path, create=True)
    cfg = PipelineConfig(epochs=1, batch_size=8, seg={"size": 256, "epochs": 1, "epochs_per_round": 1,
                                                      "per_round": 100, "max_rounds": 0, "polish_epochs": 0,
                                                      "tta": False})
    run.update_config(data_root=str(root), synthetic=True, pipeline=asdict(cfg))
    Pipeline(run, root, cfg, progress=False).run_all()
    return path


def percentiles(samples):
    a = np.array(samples) * 1000
    return round(float(np.percentile(a, 50)), 2), round(float(np.percentile(a, 95)), 2)


def bench_tau_and_predict():
    from core.data.imaging import read_slice
    from core.explain.attention import threshold_box, upsample_maps
    from core.inference import TrainedRun
    from core.inputs.boxes import crop

    run = tiny_run()
    tr = TrainedRun.load(run)
    img = read_slice(next((ROOT / ".cache" / "bench-phantoms" / "covid-ct" / "CT_COVID").glob("*.png")))
    a = tr.analyse(img)
    rng = np.random.default_rng(0)
    amap = upsample_maps(torch.rand(1, 7, 7), 224)[0].numpy()
    crop_t, rescore_t = [], []
    for tau in rng.uniform(0.05, 0.95, 100):
        t = time.perf_counter()
        hc = threshold_box(amap, float(tau))
        crop(a.hires, hc.box, 224)
        crop_t.append(time.perf_counter() - t)
    for tau in rng.uniform(0.05, 0.95, 30):
        t = time.perf_counter()
        tr.rescore_tau(a, float(tau))
        rescore_t.append(time.perf_counter() - t)
    p50, p95 = percentiles(crop_t)
    row("tau-slider crop (threshold+region+crop)", f"p50 {p50} / p95 {p95}", "ms", "floor 20 ms")
    p50, p95 = percentiles(rescore_t)
    row("tau-slider crop + heatmap & fusion re-score", f"p50 {p50} / p95 {p95}", "ms", "floor 150 ms")
    pred = [median_time(lambda: tr.analyse(img), 1) for _ in range(5)]
    p50, p95 = percentiles(pred)
    row("one-slice full prediction", f"p50 {p50} / p95 {p95}", "ms", "efficientnet_lite0, 5 models")


def bench_embedding():
    from core.explain.embedding import embed_3d

    rng = np.random.default_rng(0)
    for n in (746, 10_000):
        centres = rng.normal(size=(8, 5122))
        x = (centres[rng.integers(0, 8, n)] + rng.normal(scale=2.0, size=(n, 5122))).astype(np.float32)
        for method in ("tsne", "umap"):
            t = median_time(lambda: embed_3d(x, method), 1)
            row(f"3D {method}, {n} points (5122-D)", round(t, 1), "s", "PCA to 50-D first")


def bench_dashboard():
    run = tiny_run()
    env = {**os.environ, "COVID_LAB_RUNS": str(run.parent)}
    port = 8599
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                          "--server.headless", "true", "--", "--runs", str(run.parent)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t < 120:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        row("dashboard cold start (process to served)", round(time.perf_counter() - t, 2), "s")
    finally:
        p.kill()
    from streamlit.testing.v1 import AppTest

    os.environ["COVID_LAB_RUNS"] = str(run.parent)
    t = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    row("dashboard first render (AppTest, overview)", round(time.perf_counter() - t, 2), "s",
        "errors: " + str(len(at.exception)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="train,precision,layout,segmenter,tau,embedding,dashboard")
    args = p.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    parts = {"train": bench_train_loop, "precision": bench_precision, "layout": bench_layout,
             "segmenter": bench_segmenter, "tau": bench_tau_and_predict, "embedding": bench_embedding,
             "dashboard": bench_dashboard}
    for name in args.only.split(","):
        print(f"[{name}]", flush=True)
        parts[name]()
    row("peak memory (this process)", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "MiB")
    lines = ["| benchmark | value | unit | note |", "|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['value']} | {r['unit']} | {r['note']} |" for r in ROWS]
    table = "\n".join(lines)
    print("\n" + table)
    (OUT / "bench.json").write_text(json.dumps({"torch_threads": torch.get_num_threads(), "rows": ROWS}, indent=1))
    (OUT / "bench.md").write_text(table + "\n")


if __name__ == "__main__":
    main()

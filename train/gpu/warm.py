"""Every slice decoded, resized and framed once, in parallel worker processes, before anything touches the
GPU: the runs then read the on-disk caches (also used by bench/gpu_compare.sh)."""
from __future__ import annotations

import os
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CHUNK = 64  # slices a worker decodes per task


def _warm(task) -> int:
    """Decode (and frame) one chunk of slices into the on-disk caches; run in worker processes."""
    what, paths, size, mode = task
    if what == "frames":
        from core.inputs.frames import load_frames

        load_frames(paths, size, mode)
    else:
        from core.data.image_cache import load_stack

        load_stack(paths, size)
    return len(paths)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def warm_caches(root: Path, cfg, selfsup: bool, workers: int) -> dict:
    """Every slice decoded, resized (and, for COVID-CT, framed as the runs' input mode wants) once, in
    parallel, before anything touches the GPU: the runs then read the caches."""
    from core.data.covidct import read_covidct
    from core.data.semiseg import read_labelled, unlabelled_pool

    from ..selfsup import selfsup_paths

    ct = [str(s.path) for s in read_covidct(root)]
    try:
        import core.inputs.frames  # noqa: F401  (input modes: the lung-field frames of core.inputs.harmonise)
        from core.inputs.fields import needs_segmenter

        mode = cfg.input
        # lungs+lesions frames need each run's segmenter: the runs frame them after Algorithm 1
        what = "stack" if needs_segmenter(mode) else "frames"
        ct_tasks = [(what, ct, size, mode) for size in (cfg.image_size, cfg.hires_size)]
    except (ImportError, AttributeError):
        ct_tasks = [("stack", ct, size, None) for size in (cfg.image_size, cfg.hires_size)]
    seg = [str(s.image) for split in ("train", "test") for s in read_labelled(root, split)]
    seg += [str(p) for _, p in unlabelled_pool(root)]
    tasks = ct_tasks + [("stack", seg, cfg.seg.size, None)]
    if cfg.second_source != "none":  # the second source's candidates, framed as COVID-CT's slices
        from core.data.second_source import candidates

        volumes = [str(s.image) for s in candidates(root)]
        tasks += [(w, volumes, size, mode) for w, _, size, mode in ct_tasks]
    if selfsup:
        tasks.append(("stack", [str(p) for p in selfsup_paths(root)], cfg.image_size, None))
    chunks = [(w, paths[i:i + CHUNK], size, mode) for w, paths, size, mode in tasks
              for i in range(0, len(paths), CHUNK)]
    if workers > 1:
        import multiprocessing

        # one thread per worker, set before the workers load their maths libraries: otherwise each starts
        # a thread per core (on the 16-core GPU machine, beside the segmenter, a warm-up took 504 s)
        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        os.environ.update({k: "1" for k in THREAD_VARS})
        try:
            with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
                n = sum(pool.map(_warm, chunks, chunksize=1))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
    else:
        n = sum(map(_warm, chunks))
    return {"slices": n, "tasks": [f"{w} {len(p)} x {s}" for w, p, s, _ in tasks]}


def warm_for_recipes(root: Path, recipes, args, seg, workers: int) -> dict:
    """warm_caches once per (input mode, second source) the recipes use; Self-Trans's slices with the first
    when any run starts from Self-Trans. Returns the slice reads cached and the tasks done."""
    from core.config import PipelineConfig

    warmed, seen = {"slices": 0, "tasks": []}, set()
    for recipe in recipes:  # each recipe's input mode and second source
        cfg = PipelineConfig(recipe=recipe, input=args.input, image_size=args.image_size, seg=seg)
        if (cfg.input, cfg.second_source) not in seen:
            w = warm_caches(root, cfg, "selftrans" in args.inits.split(",") and not seen, workers)
            warmed = {"slices": warmed["slices"] + w["slices"], "tasks": warmed["tasks"] + w["tasks"]}
            seen.add((cfg.input, cfg.second_source))
    return warmed

"""Reproduce the paper's Tables 1-3 into one folder (Markdown + CSV), resumable.

    python -m train reproduce --data-root ../shared/data --backbones efficientnet_lite0 \
        --inits imagenet,selftrans --seeds 3 --out runs/reproduce
    python -m train reproduce --backbones efficientnet_lite0 --seeds 1 --epochs 2 --out runs/repro-demo  # phantoms

Every configuration is one run folder under --out/runs/ (named backbone-init-strategy-sSEED), trained
by the same Pipeline as `train pipeline`; a finished folder is read as it is (so a run trained
earlier with `train pipeline` can be linked in under the configuration's name), a killed one
resumes. The segmenter is trained once (seed 0, or taken from --segmenter) and shared by every
configuration, and the joint strategies reuse it too, so nothing shared is trained twice.
`selftrans` needs --selftrans-ckpt (from `python -m train selfsup`). all_runs.csv names the run
folder and the epoch settings behind every row. --collect trains nothing and tabulates what has
finished so far (e.g. while configurations train in other processes or on other machines).
Tables: table1_2.{md,csv} (global, global+infected, global+heatmap, fusion per backbone and init:
accuracy/F1/AUC mean ± std over seeds on the test split, the paper's numbers beside them) and
table3.{md,csv} (strategies GHIF, GHI-F, G-H-I-F: fusion on the test split).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core.config import PipelineConfig, SegConfig
from core.data.slices import resolve_data_root
from core.errors import UsageError
from core.pipeline import Pipeline
from core.results.tables import TABLE_METRICS, markdown_table, mean_std, run_rows, table3
from core.runs.checkpoint import atomic_write_text
from core.runs.run_view import paper_results
from core.runs.runfolder import RunFolder

from .common import add_config_args, config_from_args, pick_device

TABLE12_BRANCHES = ("global", "global+infected", "global+heatmap", "fusion")


def add_args(p):
    p.add_argument("--data-root", default=None)
    p.add_argument("--backbones", default=PipelineConfig().backbone, help="comma list of backbones")
    p.add_argument("--inits", default="imagenet", help="comma list of imagenet, scratch, selftrans")
    p.add_argument("--selftrans-ckpt", default=None, help="checkpoint from `python -m train selfsup` for init selftrans")
    p.add_argument("--strategies", default="G-H-I-F,GHI-F,GHIF", help="Table 3 rows (first backbone and init)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--segmenter", default=None, help="a trained segmenter checkpoint shared by every configuration")
    # every configuration's schedule and image sizes (core.config.PipelineConfig)
    add_config_args(p, PipelineConfig,
                    only=("epochs", "branch_epochs", "image_size", "lesion_size", "audits", "precompute"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--collect", action="store_true",
                   help="train nothing: build the tables from the configurations already finished under --out")
    p.add_argument("--no-progress", action="store_true")
    # the shared segmenter's settings: one --seg-* flag per SegConfig field (--seg-epochs, --seg-max-rounds ...)
    add_config_args(p, SegConfig, prefix="seg-", title="segmenter, Algorithm 1 (core.config.SegConfig)")


def finished(path: Path, backbone: str, strategy: str) -> bool:
    """A run folder whose pipeline completed (timings total written last) for this backbone and strategy."""
    if not (path / "config.json").exists():
        return False
    run = RunFolder(path)
    if "total" not in run.config.get("timings", {}):
        return False
    pipe = PipelineConfig.of_run(run)
    return (pipe.backbone, pipe.strategy) == (backbone, strategy)


def run(args):
    data_root, synthetic = resolve_data_root(args.data_root)
    out = Path(args.out)
    device = pick_device(args.device)
    backbones, inits = args.backbones.split(","), args.inits.split(",")
    strategies = args.strategies.split(",")
    if "selftrans" in inits and not args.selftrans_ckpt:
        raise UsageError("--inits selftrans needs --selftrans-ckpt (train one with `python -m train selfsup`)")
    seg = config_from_args(args, SegConfig, prefix="seg-")
    jobs = [(b, i, "G-H-I-F", s) for b in backbones for i in inits for s in range(args.seeds)]
    jobs += [(backbones[0], inits[0], st, s) for st in strategies if st != "G-H-I-F" for s in range(args.seeds)]
    shared_seg = args.segmenter
    records = []
    for k, (backbone, init, strategy, seed) in enumerate(jobs, 1):
        name = f"{backbone}-{init}-{strategy}-s{seed}"
        print(f"[{k}/{len(jobs)}] {name}", flush=True)
        path = out / "runs" / name
        done = finished(path, backbone, strategy)
        if args.collect and not done:
            print("  not finished: left out of the tables (--collect)", flush=True)
            continue
        run_ = RunFolder(path, create=True)
        if done:
            print(f"  finished earlier: read as it is ({run_.path.resolve()})", flush=True)
        else:
            cfg = config_from_args(args, PipelineConfig, backbone=backbone, seed=seed, strategy=strategy, seg=seg,
                                   init=args.selftrans_ckpt if init == "selftrans" else init, segmenter=shared_seg)
            run_.update_config(synthetic=synthetic)
            Pipeline(run_, data_root, cfg, device=device, progress=not args.no_progress, resume=True).run_all()
        shared_seg = shared_seg or str(run_.stage("infnet") / "best.pt")
        records += run_rows(run_, backbone=backbone, init=init, strategy=strategy, seed=seed)
    if not records:
        raise UsageError(f"{out}: no finished configuration to tabulate")
    t12, t3 = write_tables(records, out, synthetic, first=(backbones[0], inits[0]))
    print(json.dumps({"out": str(out), "table1_2": t12.to_dict("records"), "table3": t3.to_dict("records")}))
    return 0


def write_tables(records: list[dict], out: Path, synthetic: bool, first: tuple[str, str],
                 keys: tuple[str, ...] = ("backbone", "init")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """all_runs.csv, table1_2.{md,csv} (G-H-I-F rows by `keys` and branch) and table3.{md,csv} (fusion of
    the `first` (backbone, init) by strategy, and by the other `keys`) from run_rows records."""
    df = pd.DataFrame(records)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "all_runs.csv", index=False)
    t12 = _table12(df[df.strategy == "G-H-I-F"], keys)
    rest = tuple(k for k in keys if k not in ("backbone", "init"))
    t3 = table3(df[(df.branch == "fusion") & (df.backbone == first[0]) & (df.init == first[1])], rest)
    note = "synthetic phantoms (not a real-data result)\n\n" if synthetic else ""
    for name, table in (("table1_2", t12), ("table3", t3)):
        table.to_csv(out / f"{name}.csv", index=False)
        atomic_write_text(out / f"{name}.md", note + markdown(table) + "\n")
    return t12, t3


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    if not cols:
        return "(no finished runs)"
    return markdown_table(cols, [[r[c] for c in cols] for _, r in df.iterrows()])


def _table12(df: pd.DataFrame, keys=("backbone", "init")) -> pd.DataFrame:
    paper = paper_results()
    rows = []
    for values, g in df.groupby([*keys, "branch"], sort=False):
        cell = dict(zip([*keys, "branch"], values))
        backbone, init, branch = cell["backbone"], cell["init"], cell["branch"]
        if branch not in TABLE12_BRANCHES:
            continue
        same = paper[(paper.init == init) & (paper.branch == branch)]
        # the paper's own backbone when it reports this one, else its DenseNet169 for comparison
        hit = same[same.backbone == backbone] if (same.backbone == backbone).any() else same[same.backbone == "densenet169"]
        paper_cell = "—" if hit.empty else \
            "/".join(f"{v:.2f}" for v in hit[list(TABLE_METRICS)].iloc[0]) + f" ({hit.backbone.iloc[0]})"
        rows.append({**cell, "seeds": len(g), **{m: mean_std(g[m]) for m in TABLE_METRICS},
                     "paper acc/F1/AUC": paper_cell})
    if not rows:
        return pd.DataFrame()
    order = {b: i for i, b in enumerate(TABLE12_BRANCHES)}
    return pd.DataFrame(rows).sort_values([*keys, "branch"], key=lambda s: s.map(order) if s.name == "branch" else s)

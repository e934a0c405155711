"""Result tables from run folders, computed one way for every reader (`train reproduce`, `train gpu-run`,
the dashboard's strategy table): each branch on the test split at its operating point chosen on the
validation split, then mean ± std over seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.config import STRATEGIES, PipelineConfig
from core.results.predictions import run_metrics
from core.runs.runfolder import RunError, RunFolder, safe_child

TABLE_METRICS = ("accuracy", "f1", "auc")  # the paper's columns
TABLE3_ORDER = STRATEGIES[::-1]  # the paper's Table 3 lists GHIF first


def mean_std(values) -> str:
    v = np.array(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def run_rows(run: RunFolder, n_boot: int = 0, **cell) -> list[dict]:
    """One row per branch of a run: the cell it fills (backbone, init, strategy, seed...), its test-split
    accuracy, F1 and AUC, and where it came from."""
    pipe = PipelineConfig.of_run(run)
    total = run.config.get("timings", {}).get("total")
    provenance = {"run": str(run.path.resolve()), "epochs": pipe.epochs, "branch_epochs": pipe.branch_epochs,
                  "pipeline_minutes": None if total is None else round(total / 60, 1)}
    metrics = run_metrics(run, "test", n_boot=n_boot)
    return [{**cell, "branch": branch, **{x: m[x]["value"] for x in TABLE_METRICS}, **provenance}
            for branch, m in metrics.items()]


def table3(df: pd.DataFrame, keys=()) -> pd.DataFrame:
    """run_rows of the fusion branch (column `strategy`) -> one row per strategy (and `keys`), the
    paper's order, mean ± std over seeds."""
    rows = []
    for values, part in (df.groupby(list(keys), sort=False) if keys else [((), df)]):
        cell = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        for strategy in TABLE3_ORDER:
            g = part[part.strategy == strategy]
            if len(g):
                rows.append({**cell, "strategy": strategy, "seeds": len(g), **{m: mean_std(g[m]) for m in TABLE_METRICS}})
    return pd.DataFrame(rows)


REPRODUCED_TABLE3 = "table3.csv"  # what `python -m train reproduce --out` writes; looked for beside the runs folder


def configured_strategies(config: dict) -> pd.DataFrame | None:
    """A run configuration's own `strategy_comparison` ({strategy: {metric: value}} or a list of rows)
    as a table, or None when it has none."""
    raw = config.get("strategy_comparison")
    if isinstance(raw, dict) and raw:
        return pd.DataFrame([{"strategy": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in raw.items()])
    if isinstance(raw, list) and raw and all(isinstance(r, dict) for r in raw):
        return pd.DataFrame(raw)
    return None


def sibling_strategies(runs_dir: str | Path, name: str, others) -> pd.DataFrame | None:
    """table3 of the fusion branch of the runs named in `others` (under runs_dir; run `name` among them
    if it is to count) that share run `name`'s backbone and init; None below two strategies. A run that
    cannot be read (half-written, bad name) is left out."""
    me = PipelineConfig.of_run(RunFolder(safe_child(runs_dir, name)))
    rows = []
    for other in others:
        try:
            run = RunFolder(safe_child(runs_dir, other))
            pipe = PipelineConfig.of_run(run)
            if (pipe.backbone, pipe.init) != (me.backbone, me.init):
                continue
            rows += [r for r in run_rows(run, strategy=pipe.strategy, run_name=other) if r["branch"] == "fusion"]
        except (RunError, ValueError, KeyError, OSError):
            continue
    if len({r["strategy"] for r in rows}) < 2:
        return None
    return table3(pd.DataFrame(rows))


def strategy_comparison(runs_dir: str | Path, name: str, others) -> tuple[pd.DataFrame, str] | None:
    """The training-strategy comparison (the paper's Table 3) to show beside run `name`, and where it came
    from: the run configuration's own (configured_strategies), else the runs in `others` with its backbone
    and init (sibling_strategies), else the table3.csv `train reproduce` wrote beside the runs folder.
    None when there is none."""
    runs_dir = Path(runs_dir)
    table = configured_strategies(RunFolder(safe_child(runs_dir, name)).config)
    if table is not None:
        return table, "the run's configuration"
    table = sibling_strategies(runs_dir, name, others)
    if table is not None:
        return table, f"runs under {runs_dir.name}/ with the same backbone and init"
    f = runs_dir.parent / REPRODUCED_TABLE3
    if f.is_file() and f.stat().st_size < 1_000_000:
        try:
            return pd.read_csv(f), f"{f.parent.name}/{REPRODUCED_TABLE3} (python -m train reproduce)"
        except (ValueError, OSError):
            return None
    return None


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-markdown table: every report and table file of the project is rendered by this."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)

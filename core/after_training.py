"""The stages after training, run by `Pipeline.run_all` after the fusion CAM, in the order of AFTER_TRAINING.

One row per stage: its name (in the progress log and the Training page), the function that computes it and
writes its files, the files it writes (relative to the run folder), the sizes it runs at, the setting that
turns it off (`--no-audits` the audits, `--no-precompute` precompute) and its cost for the ETA. Adding a stage
is one row.

The audits run at the sizes of their full commands (`train shortcut`, `train probe`, `train fidelity`,
`train trust`, which write the same files): a row's `sizes` are left empty so each takes its command's defaults,
declared once with the command. They add about 10 minutes to the real-data `make demo` (35 minutes in all before
they ran at full size, docs/after-training.md); a row may set smaller sizes (the command's own arguments).

A stage is done when config.json's "after_training" records it under the key of its inputs (every trained
checkpoint, predictions.csv, the lung field's algorithm, its methods' versions, the data folder, its sizes) and
each file it writes is there: a resumed pipeline skips it. A stage that fails is named in the run's log, its
progress-log end event and on stderr; the stages after it still run (the models they read are trained).

Cost (the ETA, core.runs.eta): the passes of one slice through the whole pipeline a stage makes at its sizes,
times PASS, in training images of an image stage, which the ETA converts to seconds at this run's measured
speed. The passes per slice scored and PASS were measured on a phantom run (docs/after-training.md).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.runs.feature_cache import file_digest, key_of
from core.runs.progress import ProgressLog
from core.runs.runfolder import RunFolder

RECORD = "after_training"  # config.json's key: {stage: {"key", "seconds"} or {"key", "error"}}
KIND = "analysis"  # the progress log's kind of these stages (core.runs.progress.KINDS)


@dataclass
class After:
    """What a stage after training reads: the run folder and how the pipeline ran."""
    run: RunFolder
    data_root: Path
    device: object = "cpu"
    progress: bool = False
    n_slices: int = 0  # COVID-CT slices of the run (the predictions' rows)
    decision: str = "fusion"  # the run's decision (PipelineConfig.decision): two-step is fitted by `external`


# ---- the stages ---------------------------------------------------------------------------------------
def external(a: After) -> None:
    """The other hospitals scored through the run; with decision two-step, the decision fitted there."""
    from core.audits.external import run_external

    run_external(a.run, a.data_root, fit=a.decision == "two-step", log=a.run.log, device=a.device)


def shortcut(a: After, **sizes) -> None:
    from core.audits.shortcut import write_audit

    write_audit(a.run, a.data_root, a.device, progress=a.progress, **sizes)


def windows(a: After) -> None:
    from core.audits.windows import write_windows

    write_windows(a.run, a.data_root, a.device, progress=a.progress)


def probe(a: After, **sizes) -> None:
    from core.audits.branch_probe import write_probe

    write_probe(a.run, **sizes)


def fidelity(a: After, **sizes) -> None:
    from core.explain.fidelity import write_fidelity

    write_fidelity(a.run, a.data_root, device=a.device, progress=a.progress, **sizes)


def trust(a: After, **sizes) -> None:
    from core.trust.measure import measure

    measure(a.run, a.data_root, device=a.device, progress=a.progress, **sizes)


def precompute(a: After, data_pages: int) -> None:
    """What the pages read on their first visit: the Overview's metrics with their bootstrap intervals (the
    metrics_<split>.json `train evaluate` writes), and into the run's feature cache the Map page's 3D maps and
    hover cards (RunView.precompute), every slice's out-of-distribution flag (the Map, Case and Margin pages'
    colour and filter) and the Data page's first `data_pages` pages of each source (core.pictures.data_views)."""
    from core.pictures import data_views
    from core.pictures.slice_images import hover_cards
    from core.results.predictions import REPORTED_SPLITS, evaluate_run, read_predictions
    from core.runs.run_view import RunView
    from core.trust import store
    from core.trust.slices import run_slice_flags

    present = set(read_predictions(a.run).split)
    for split in (s for s in REPORTED_SPLITS if s in present):
        evaluate_run(a.run, split)
    view = RunView(a.run.path.parent, a.run.path.name)
    view.precompute(hover_cards)
    run_slice_flags(view, store.load(a.run))
    data_views.precompute(a.run, data_pages)


# ---- costs: passes of one slice through the whole pipeline (docs/after-training.md) ---------------------
PASS = 3.2  # training images of an image stage that one slice's pass through the whole pipeline costs as much as


def _labelled_test(a: After) -> int:
    from core.data.semiseg import read_labelled

    return len(read_labelled(a.data_root, "test"))


def _test_slices(a: After) -> int:
    from core.data.covidct import read_covidct

    return sum(s.split == "test" for s in read_covidct(a.data_root))


def _upto(limit: int | None, n: int) -> int:
    return n if limit is None else min(limit, n)


def _shortcut_passes(a: After, limit: int | None = None, **_) -> float:  # 3 conditions x test slices, external
    return 3 * _upto(limit, _test_slices(a)) + _upto(limit, _labelled_test(a))


def _fidelity_passes(a: After, limit: int | None = None, **_) -> float:  # 5 maps, two deletion curves per slice
    return 50 * _upto(limit, _labelled_test(a))


def _trust_passes(a: After, slices: int | None = None, **_) -> float:  # 5 maps' tests per slice, 37 OOD inputs
    from core.trust.map_checks import DEFAULT_SLICES

    return 225 * min(DEFAULT_SLICES if slices is None else slices, _labelled_test(a)) + 37


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., None]  # (After, **sizes): computes and writes
    writes: tuple[str, ...]  # files it writes into the run folder
    sizes: dict = field(default_factory=dict)  # the run's sizes: the command's own size arguments
    switch: str = "audits"  # the PipelineConfig flag that turns it off when false: audits or precompute
    decides: str | None = None  # a decision (PipelineConfig.decision) this stage makes: it runs for it always
    methods: Callable[[], dict] = dict  # versions of the methods it applies besides the networks: part of its key
    passes: Callable[..., float] = lambda a, **sizes: 0.3 * a.n_slices  # (After, **sizes) -> pipeline passes

    @property
    def audit(self) -> bool:
        return self.switch == "audits"

    def images(self, a: After) -> int:
        """Its cost in training images of an image stage (the ETA converts them at this run's speed)."""
        return round(PASS * self.passes(a, **self.sizes))


def _external_passes(a: After, **_) -> float:  # every labelled COVID-SemiSeg slice and every COVID-CT-MD slice
    from core.audits.external import external_slices

    return len(external_slices(a.data_root))


def _windows_passes(a: After, **_) -> float:  # every reported COVID-CT-MD slice in each window
    from core.audits.windows import WINDOWS, reported_slices

    return len(WINDOWS) * len(reported_slices(a.data_root))


def _external_methods() -> dict:  # the radiological signs it scores every external slice with
    from core.knowledge.signs import SIGNS_VERSION

    return {"signs": SIGNS_VERSION}


AFTER_TRAINING = (
    Stage("external", external, ("external.json", "external.csv"), decides="two-step", passes=_external_passes,
          methods=_external_methods),
    Stage("shortcut", shortcut, ("shortcut.json", "shortcut.csv"), passes=_shortcut_passes),
    Stage("windows", windows, ("windows.json",), passes=_windows_passes),
    Stage("probe", probe, ("branch_probe.csv",), passes=lambda a, **_: 3),
    Stage("fidelity", fidelity, ("fidelity.json", "fidelity.csv"), passes=_fidelity_passes),
    Stage("trust", trust, ("trust.json", "trust.csv"), passes=_trust_passes),
    Stage("precompute", precompute, (), {"data_pages": 1}, switch="precompute"),
)


def planned(audits: bool, decision: str = "fusion", precompute: bool = True) -> tuple[Stage, ...]:
    """The stages a run with these settings runs (PipelineConfig.audits, .decision, .precompute)."""
    on = {"audits": audits, "precompute": precompute}
    return tuple(s for s in AFTER_TRAINING if on[s.switch] or s.decides == decision)


def plan_rows(a: After, audits: bool, precompute: bool = True) -> list[dict]:
    """The progress log's plan rows of the stages after training (after core.training.plan's, in run_all)."""
    return [{"stage": s.name, "kind": KIND, "planned_images": s.images(a)}
            for s in planned(audits, a.decision, precompute)]


# ---- running them -------------------------------------------------------------------------------------
def inputs_key(a: After, stage: Stage) -> str:
    """What a stage's result depends on: every trained checkpoint, the predictions, how inputs are framed (the lung
    field's algorithm: the external slices' fields and signs), the versions of its own methods, the data folder,
    its sizes."""
    from core.config import PipelineConfig
    from core.models.network import STAGES

    ckpts = {s: file_digest(a.run.stage(s) / "best.pt") for s in STAGES if (a.run.stage(s) / "best.pt").exists()}
    return key_of({"checkpoints": ckpts, "predictions": file_digest(a.run.predictions_csv),
                   "input": PipelineConfig.of_run(a.run).input_version, "methods": stage.methods(),
                   "data_root": str(a.data_root), "sizes": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in stage.sizes.items()}})


def is_done(a: After, stage: Stage) -> bool:
    rec = (a.run.config.get(RECORD) or {}).get(stage.name) or {}
    return ("seconds" in rec and rec.get("key") == inputs_key(a, stage)
            and all((a.run.path / f).exists() for f in stage.writes))


def _record(a: After, name: str, entry: dict) -> None:
    a.run.update_config(**{RECORD: {**(a.run.config.get(RECORD) or {}), name: entry}})


def run_stages(a: After, audits: bool, log: ProgressLog, say=print, precompute: bool = True) -> dict[str, float]:
    """Run each planned stage not done yet (is_done); {name: seconds} of those that ran."""
    seconds = {}
    for stage in planned(audits, a.decision, precompute):
        if is_done(a, stage):
            say(f"{stage.name}: done earlier with these inputs, kept")
            continue
        report = log.stage(stage.name, KIND)
        report.start(planned_images=stage.images(a))
        t0 = time.time()
        try:
            stage.run(a, **stage.sizes)
        except Exception as exc:  # noqa: BLE001 -- the models are trained: the next stages still run; it is named
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            say(f"{stage.name}: failed: {error}")
            print(f"{stage.name}: failed: {error}", file=sys.stderr, flush=True)
            _record(a, stage.name, {"key": inputs_key(a, stage), "error": error})
            log.write("stage_end", stage=stage.name, error=error)
            continue
        seconds[stage.name] = time.time() - t0
        _record(a, stage.name, {"key": inputs_key(a, stage), "seconds": round(seconds[stage.name], 1)})
        report.end()
        say(f"{stage.name}: {seconds[stage.name]:.0f} s")
    return seconds

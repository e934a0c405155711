"""Can a map, a decision, a slice be trusted? Map sanity checks, prediction sets, the out-of-distribution flag.

    python -m train trust --run runs/lite0 --data-root ../shared/data
    python -m train trust --run runs/lite0 --slices 4 --parts maps
    python -m train trust --run runs/lite0 --parts sets,ood --level 0.95

Three parts (--parts, all by default), each written into RUN/trust.json under its own key and reused on the
next call while the run's checkpoints, predictions and the part's settings are the same (rebuilt when stale):

maps  Quantus 0.6 tests of every CAM method of the global branch and of the decision branch's fusion CAM, beside
      a uniform, a random and an edge map, on the first --slices labelled COVID-SemiSeg test slices
      (core.trust.map_checks): model-parameter randomisation, region perturbation (MoRF - LeRF), max-sensitivity,
      localisation against the expert masks. RUN/trust.csv: one row per branch x method x metric. Verdicts with
      their pass rules: core.trust.verdicts. Score-CAM runs one forward pass per channel: only when named in
      --methods.
sets  class-conditional split-conformal prediction sets of one branch (--branch, the decision branch by default)
      at --level, calibrated on the validation split; coverage per class and the share of two-class sets on the
      test split (core.trust.conformal).
ood   the out-of-distribution flag (core.trust.ood): a Ledoit-Wolf Mahalanobis distance in the fusion feature space
      and one of the image's statistics (core.trust.image_check, with its lung field), each fitted on the training
      split, threshold on the validation split at false-alarm level --alpha / 2; its flag rate on the COVID-CT
      test slices, on inputs that are no chest CT (core.trust.probes) and on photographs held out from choosing
      the image statistics. The first run reads each of the run's slices once for its statistics (cached).

How the default --slices was sized: 10 minutes on a 2-core CPU left to itself (not timed here, where other jobs
shared the CPU; the integrator times it). Per slice, with the default methods, hooks on the backbones of the
synthetic run counted 476 passes of the global backbone (56 of them with a backward pass: Grad-CAM and
Grad-CAM++) and 196 passes of the whole decision pipeline (two EfficientNet-Lite0 at 224 px and two at 160 px
each, about three 224-px passes): the randomisation test's 23 explanations, region perturbation's 2 x 21 and
max-sensitivity's 5 per map, times 5 methods + 3 baselines (global) and 1 + 3 (fusion). `make demo DATA=...`
on this machine (docs/results-demo.md at 1670a6b) took 0.6 min for the global features of 746 slices and 1.2 min
for their fusion CAMs (four backbone passes a slice): about 0.03 s for one batched 224-px forward pass, a forward and
backward pass about three times that; single-slice batches cost about 1.5 times as much. That is about
476 x 0.05 + 56 x 0.1 + 196 x 3 x 0.05 = 60 s a slice, plus one TrainedRun.analyse, so 8 slices
(core.trust.map_checks.DEFAULT_SLICES) take about 8-9 minutes and the sets and ood parts (20 probe inputs and 17
held-out photographs through the pipeline) about one. On a CPU other jobs keep busy, run it with
OMP_NUM_THREADS=1: two torch threads waiting on each other over busy cores made each pass about 20 times slower
here.
"""
from __future__ import annotations

import argparse

from core.errors import UsageError
from core.explain.cams import CAM_METHODS
from core.runs.runfolder import RunFolder
from core.trust import store
from core.trust.conformal import LEVEL
from core.trust.map_checks import DEFAULT_METHODS, DEFAULT_SLICES, MapSettings
from core.trust.ood import ALPHA

from .common import cam_methods, nonnegative_int, pick_device, positive_int, run_data_root

TABLE_METRICS = (("randomisation", "randomisation (rank corr.)"), ("faithfulness", "MoRF - LeRF"),
                 ("max_sensitivity", "max-sensitivity"), ("auc", "lesion AUC"), ("relevance_mass", "relevance mass"),
                 ("pointing_game_tolerance", "pointing (15 px)"), ("flat", "flat maps"))


def _parts(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in store.PARTS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(bad) or '(none given)'}; "
                                         f"choose from {', '.join(store.PARTS)}")
    return list(dict.fromkeys(names))


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {v}")
    return v


def add_args(p):
    p.add_argument("--run", required=True, help="a run folder trained by `python -m train pipeline`")
    p.add_argument("--data-root", default=None,
                   help="folder holding semiseg/ (default: the run's data_root from its config.json); maps only")
    p.add_argument("--slices", type=positive_int, default=DEFAULT_SLICES,
                   help=f"labelled COVID-SemiSeg test slices the maps are tested on (default {DEFAULT_SLICES})")
    p.add_argument("--methods", type=cam_methods, default=list(DEFAULT_METHODS),
                   help=f"the global branch's CAM methods (default {','.join(DEFAULT_METHODS)}; "
                        f"available: {','.join(CAM_METHODS)})")
    p.add_argument("--parts", type=_parts, default=list(store.PARTS),
                   help=f"what to measure, comma-separated (default {','.join(store.PARTS)})")
    p.add_argument("--branch", default=None, help="the branch the prediction sets are for (default: the run's decision, "
                                                  "two-step when fitted, else fusion)")
    p.add_argument("--level", type=_share, default=LEVEL, help=f"the prediction sets' coverage level (default {LEVEL})")
    p.add_argument("--alpha", type=_share, default=ALPHA,
                   help=f"the out-of-distribution flag's false-alarm level on the validation split (default {ALPHA})")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random maps, tie-breaks and noise")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def measure(args) -> dict:
    """{part: result} for the parts asked (core.trust.measure)."""
    from core.trust.measure import measure as measure_run

    folder = RunFolder(args.run)
    root = run_data_root(folder, args.data_root) if "maps" in args.parts else None
    try:
        MapSettings(methods=tuple(args.methods), slices=args.slices, seed=args.seed)
    except ValueError as exc:  # a setting the map checks cannot run with: the user's to change
        raise UsageError(str(exc)) from None
    return measure_run(folder, root, args.parts, args.methods, args.slices, args.branch, args.level, args.alpha,
                       args.seed, pick_device(args.device), progress=not args.no_progress)


def table(result: dict) -> str:
    """The short text the command prints: the maps table with each method's verdict, the sets, the flag."""
    from core.results.tables import markdown_table
    from core.trust.verdicts import TESTS, verdicts

    lines = []
    if "maps" in result:
        maps = result["maps"]
        means = {(r["branch"], r["method"], r["metric"]): r["mean"] for r in maps["rows"]}
        judged = {}
        for v in verdicts(maps["rows"]):
            judged.setdefault((v.branch, v.method), []).append(v)
        rows = [[b, m, *(_fmt(means.get((b, m, k))) for k, _ in TABLE_METRICS),
                 ", ".join(f"{v.test} {'pass' if v.passed else 'FAIL' if v.passed is False else '?'}" for v in vs)]
                for (b, m), vs in judged.items()]
        lines += [f"Maps: {maps['n_slices']} labelled COVID-SemiSeg test slices (tests: {', '.join(TESTS)})", "",
                  markdown_table(["branch", "method", *(n for _, n in TABLE_METRICS), "verdicts"], rows), ""]
    if "sets" in result:
        s = result["sets"]
        per = ", ".join(f"{c} {_fmt(v['coverage'])} (n {v['n']})" for c, v in s["per_class"].items())
        lines += [(f"Prediction sets ({s['branch']}, level {s['level']}, calibrated on {s['calibration']['split']}): "
                   f"coverage on {s['split']}: {per}; two-class sets {_fmt(s['two_class_share'])}, "
                   f"empty sets {_fmt(s['empty_share'])}"), ""]
    if "ood" in result:
        o = result["ood"]
        kinds = ", ".join(f"{k} {_fmt(v)}" for k, v in o["probe_flag_rate_by_kind"].items())
        checks = ", ".join(f"{k} alone {_fmt(v)}" for k, v in o["probe_flag_rate_by_check"].items())
        lines += [f"Out-of-distribution flag: {o['rule']}.",
                  (f"Flagged: COVID-CT test {_fmt(o['test_flag_rate'])} (n {o['n_test']}); inputs that are no chest CT "
                   f"{_fmt(o['probe_flag_rate'])} ({kinds}; {checks}); floors met: {o['meets_floors']}; photographs "
                   f"held out from choosing the image statistics {_fmt(o['held_out_photo_flag_rate'])}"), ""]
    return "\n".join(lines)


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def run(args) -> dict:
    result = measure(args)
    print(table(result))
    return result

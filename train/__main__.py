"""Command-line entry points for every stage: `python -m train <command> --help`.

    global     Stage I, the global branch               (train/global_branch.py)
    evaluate   metrics with 95% intervals for a run      (train/evaluate.py)
    audit      near-duplicate and patient leakage audit  (train/audit.py)
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "global": ("train.global_branch", "train the global branch (Stage I)"),
    "evaluate": ("train.evaluate", "evaluate every trained branch of a run"),
    "audit": ("train.audit", "audit a data set for near-duplicates and patient leakage"),
    "check-data": ("train.check_data", "check a --data-root's layout and file counts before training"),
    "infnet": ("train.infnet", "infection segmenter (Inf-Net) + Algorithm 1 pseudo-label rounds"),
    "pipeline": ("train.pipeline", "Algorithm 2: every branch end to end (G-H-I-F)"),
    "demo": ("train.demo", "the dashboard at once, a run training beside it (make demo)"),
    "predict": ("train.predict", "run a trained pipeline on new slice files"),
    "selfsup": ("train.selfsup", "Self-Trans initialisation: contrastive pre-training on CT slices"),
    "reproduce": ("train.reproduce", "the paper's Tables 1-3 with one command"),
    "probe": ("train.probe", "does each branch add information beyond global? (held-out stacking)"),
    "fidelity": ("train.fidelity", "explanation fidelity: CAMs vs lesion masks (pointing, energy, deletion)"),
    "pack": ("train.pack", "a data pack (slices, masks, wheels, checksums) for an offline GPU machine"),
    "gpu-run": ("train.gpu_run", "the paper's tables at paper scale on one GPU, planned to a time budget"),
    "shortcut": ("train.shortcut", "shortcut audit: lungs blanked / lungs only, external slices, localisation"),
    "lungs": ("train.lungs", "classical lung fields over every slice: coverage, lesion recall, slices not found"),
    "verdicts": ("train.verdicts", "reviewers' verdicts per slice (dashboard) as CSV"),
    "external": ("train.external", "does the decision carry over? other hospitals per source and patient; fits two-step"),
    "windows": ("train.windows", "does the record on another hospital hold in other lung windows? (COVID-CT-MD, HU)"),
    "signs": ("train.signs", "radiological signs from the segmenter against the doctors' masks (COVID-SemiSeg)"),
    "trust": ("train.trust", "can a map, a decision, a slice be trusted? map sanity checks, prediction sets, OOD flag"),
    "report": ("train.report", "a Markdown report of run folders (metrics, audits, timings), generated"),
    "migrate": ("train.migrate", "bring a run folder saved by an older version up to today's format, once"),
}


def usage() -> str:
    lines = [__doc__.splitlines()[0], "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    # Import only the chosen command: one command's dependencies never break another's.
    module = importlib.import_module(COMMANDS[argv[0]][0])
    parser = argparse.ArgumentParser(prog=f"python -m train {argv[0]}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_args(parser)
    args = parser.parse_args(argv[1:])
    from core.errors import USER_ERRORS

    try:
        result = module.run(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

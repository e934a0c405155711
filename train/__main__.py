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
    "infnet": ("train.infnet", "infection segmenter (Inf-Net) + Algorithm 1 pseudo-label rounds"),
    "pipeline": ("train.pipeline", "Algorithm 2: every branch end to end (G-H-I-F)"),
    "predict": ("train.predict", "run a trained pipeline on new slice files"),
    "fidelity": ("train.fidelity", "explanation fidelity: CAMs vs lesion masks (pointing, energy, deletion)"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (mod, help_) in COMMANDS.items():
        modules[name] = importlib.import_module(mod)
        p = sub.add_parser(name, help=help_, description=modules[name].__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        modules[name].add_args(p)
    args = parser.parse_args(argv)
    from core.errors import USER_ERRORS

    try:
        result = modules[args.command].run(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Algorithm 2 end to end into one run folder (strategy G-H-I-F), every stage cached and resumable.

    python -m train pipeline --data-root ../shared/data --backbone efficientnet_lite0 --strategy G-H-I-F --out runs/lite0
    python -m train pipeline --out runs/demo --epochs 3          # synthetic phantoms, short schedule
    python -m train evaluate --run runs/lite0 --split test       # then: every branch's metrics

Every run setting is a flag derived from core.config.PipelineConfig (its default and help declared there once);
the segmenter's are --seg-* flags from core.config.SegConfig.
"""
from __future__ import annotations

import json

from core.config import SegConfig

from .common import add_config_args, config_from_args
from .global_branch import add_model_args, open_pipeline


def add_args(p):
    add_model_args(p, settings=None)  # every PipelineConfig field: --tau, --cam, --strategy, --hires-size ...
    # --seg-size, --seg-epochs, --seg-max-rounds, --no-seg-tta ...: one flag per SegConfig field
    add_config_args(p, SegConfig, prefix="seg-", title="segmenter, Algorithm 1 (core.config.SegConfig)")


def run(args):
    pipe = open_pipeline(args, seg=config_from_args(args, SegConfig, prefix="seg-"))
    try:
        timings = pipe.run_all()
    except Exception as exc:  # the progress log says why the training ended (the dashboard shows it)
        pipe.progress_log.failed(exc)
        raise
    print(json.dumps({"run": str(pipe.run.path), "seconds": timings}))
    return 0

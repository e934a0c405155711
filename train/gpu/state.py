"""What a gpu-run's outputs are written from: shared by the runner, the output writer and the budget guard's
thread."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class State:
    """Everything the outputs are written from (also by the budget guard's thread)."""
    args: object
    t0: float
    deadline: float
    out: Path
    device: str = "cpu"
    device_name: str = "cpu"
    pack: dict = field(default_factory=dict)
    jobs: list = field(default_factory=list)
    records: list = field(default_factory=list)
    stages: list = field(default_factory=list)  # {"stage", "start_s", "seconds", "gpu_util", "detail"}
    synthetic: bool = False
    current: str = ""
    notes: list = field(default_factory=list)
    speed: object = None
    sampler: object = None
    selfsup_epochs: dict = field(default_factory=dict)

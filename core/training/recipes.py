"""Named training recipes: a schedule, and the run settings it is meant with (what the networks see,
the second training source, the branch stages' epochs). `paper` is the paper's schedule; the default is
DEFAULT_RECIPE. A run's --input, --second-source and --branch-epochs override the recipe's.
Why each recipe is what it is, and the numbers that chose it: docs/recipes.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


DECISIONS = ("fusion", "two-step")  # fusion: the paper's; two-step: core.knowledge.decision


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str  # "sgd" or "adamw"
    lr: float
    weight_decay: float
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 50
    schedule: str = "step"  # "step": lr/10 at step_epoch; "cosine": cosine decay after 1 warm-up epoch
    step_epoch: int = 30
    patience: int = 0  # epochs without a better validation AUC before stopping; 0 = run all epochs
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    # model and inputs in channels-last memory: a training step takes 0.46x the time at 224 px, 0.58x at 64 px on
    # the 2-core development CPU (`python -m bench --only layout`); the segmenter trains this way too
    channels_last: bool = True
    augment: str = "light"  # "none", "light" or "strong" (core.inputs.augment)
    label_smoothing: float = 0.0
    # knowledge-guided attention (core.training.guidance): weights of the CAM penalties, 0 = off
    guide_outside: float = 0.0
    guide_lesion: float = 0.0
    # the run settings the recipe is meant with (core.config.PipelineConfig fills its unset ones from these)
    input: str = "slice"  # core.inputs.harmonise.INPUT_MODES
    second_source: str = "none"  # core.data.second_source.SOURCES
    branch_epochs: int | None = None  # heatmap and infected stages; None: `epochs`
    heads_second_source: bool = False  # the vector heads (fusion, global+heatmap) also learn from the second source
    decision: str = "fusion"  # DECISIONS: the run's decision (core.config.PipelineConfig.decision)

    @property
    def guided(self) -> bool:
        return bool(self.guide_outside or self.guide_lesion)

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    # the paper's SGD schedule
    "paper": Recipe("paper", "sgd", lr=0.01, weight_decay=1e-4, epochs=50, schedule="step", step_epoch=30),
    # AdamW with light jitter (it memorised COVID-CT's training split)
    "adamw-light": Recipe("adamw-light", "adamw", lr=5e-4, weight_decay=0.05, epochs=20, schedule="cosine",
                          patience=8, precision="bf16"),
    # the recipe before knowledge guidance: whole slice, strong scanner-like augmentation, bf16
    "fast": Recipe("fast", "adamw", lr=2e-4, weight_decay=0.05, epochs=15, schedule="cosine", patience=6,
                   precision="bf16", augment="strong", label_smoothing=0.1, branch_epochs=8),
    # "fast" on the harmonised lung field with source-destroying augmentation, no attention loss, COVID-CT only
    "harmonised": Recipe("harmonised", "adamw", lr=2e-4, weight_decay=0.05, epochs=15, schedule="cosine", patience=6,
                         precision="bf16", augment="harmonise", label_smoothing=0.1, input="lungs"),
    # knowledge-guided: lung field, source-destroying augmentation, CAM penalties, the second source
    "guided": Recipe("guided", "adamw", lr=2e-4, weight_decay=0.05, epochs=15, schedule="cosine", patience=6,
                     precision="bf16", augment="harmonise", label_smoothing=0.1, guide_outside=0.2,
                     guide_lesion=0.2, input="lungs", second_source="semiseg-volumes", branch_epochs=8),
    # "fast" without bf16, to measure what the fast path costs or gains
    "fast-fp32": Recipe("fast-fp32", "adamw", lr=2e-4, weight_decay=0.05, epochs=15, schedule="cosine",
                        patience=6, precision="fp32", augment="strong", label_smoothing=0.1),
}
# "guided" with 30 global epochs, early stopping after 10 without a better validation AUC
RECIPES["guided-long"] = replace(RECIPES["guided"], name="guided-long", epochs=30, patience=10)
# the default: "guided-long" whose vector heads (fusion, global+heatmap) also learn from the second source
RECIPES["guided-heads"] = replace(RECIPES["guided-long"], name="guided-heads", heads_second_source=True)
# "guided-heads" fed the lung field with the run's segmenter's lesions that touch it added
RECIPES["guided-lesions"] = replace(RECIPES["guided-heads"], name="guided-lesions", input="lungs+lesions")
# "guided-heads" deciding in two steps: disease present (the segmenter's lesion share) x looks like COVID
# (fusion and the signs), fitted across sources, each input's direction fixed by knowledge
RECIPES["guided-two-step"] = replace(RECIPES["guided-heads"], name="guided-two-step", decision="two-step")
DEFAULT_RECIPE = "guided-two-step"
BEFORE_GUIDANCE = "fast"  # the recipe the shortcut audit compares the default with
# the vector heads' schedule (global+heatmap, fusion) under every recipe
VECTOR_RECIPE = Recipe("vectors", "adamw", lr=1e-3, weight_decay=1e-2, batch_size=32, epochs=60,
                       schedule="cosine", patience=15, augment="none")


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})

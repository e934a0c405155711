"""A run's configuration: every setting declared once, with its default and its one-line help, as dataclass
fields. The commands derive their flags from these fields (train.common.add_config_args), the resolved
configuration is saved in the run folder's config.json ("pipeline") and every consumer reads it back through
`PipelineConfig.of_run` (or `from_saved`), which refuses a run saved in an older format and names the command
that migrates it (`python -m train migrate RUN`, core.runs.migrate).

SegConfig holds Algorithm 1's and the segmenter's inference settings (a run's "seg"); the training
schedules are core.training.recipes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from core.data.second_source import SOURCES
from core.explain.cams import CAM_METHODS
from core.explain.cams.eq1 import Eq1Cam
from core.inputs.harmonise import INPUT_MODES, version
from core.models.backbones import BACKBONES
from core.runs.runfolder import RunError
from core.training.recipes import DECISIONS, DEFAULT_RECIPE, RECIPES, Recipe, get_recipe

SEG_SOURCES = ("semiseg", "covidct")  # the unlabelled pools Algorithm 1 may draw from
PRECISIONS = ("fp32", "bf16")


class ConfigValueError(ValueError):
    """A configuration value out of range; `field` names the setting (the CLI names its flag)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _setting(default, help: str, **meta):
    """A config field: its one default, a one-line help and any other metadata (choices, none, metavar)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class SegConfig:
    """Every setting of Algorithm 1 and of segmenting with its model, each default declared here once.

    `python -m train infnet` (flags --size ...), `python -m train pipeline` / `reproduce` / `gpu-run`
    (flags --seg-size ...) derive their flags from these fields (train.common.add_config_args); the
    resolved configuration is saved with the run (metrics.json "config"; a pipeline run's config.json
    "pipeline"."seg") and rebuilt from there (`from_dict`, PipelineConfig.from_saved).
    Defaults: the pipeline's validated settings (Dice 0.734 on the real data's 48 test slices): 40
    epochs on the labelled slices, 5 rounds of 100 pseudo-labelled slices x 40 steps, 0.1 < p < 0.9
    carries no loss, half of every batch labelled, then 10 labelled-only epochs (as Semi-Inf-Net
    does). Running the rounds until the pool is empty (max_rounds None, 24 rounds) cost Dice here.
    Metadata: "help" (one line), "choices", "none" (the command-line words for None), "metavar".
    """
    size: int = _setting(256, "training/inference side in pixels (multiple of 32; Inf-Net: 352)")
    encoder: str = _setting("efficientnet_lite0", "segmenter encoder", choices=BACKBONES)
    init: str = _setting("imagenet", "encoder init: imagenet, scratch, or a checkpoint path")
    epochs: int = _setting(40, "round 0: epochs on the labelled slices")
    batch_size: int = _setting(8, "segmenter batch size")
    lr: float = _setting(4e-4, "round 0 learning rate")
    finetune_lr: float | None = _setting(None, "learning rate of each round's fine-tuning (none: lr / 2)")
    precision: str = _setting("fp32", "autocast precision (bf16: faster on GPUs and AVX512-BF16 CPUs; fp32 where "
                              "bf16 is only emulated)",
                              choices=PRECISIONS)
    sources: tuple[str, ...] = _setting(SEG_SOURCES, "unlabelled pool: semiseg, covidct or both", metavar="SOURCE,...")
    per_round: int = _setting(100, "unlabelled slices pseudo-labelled per round")
    max_rounds: int | None = _setting(5, "pseudo-label rounds, or 'all' (until the pool is empty)", none=("all",))
    epochs_per_round: int = _setting(2, "fine-tuning passes over the grown set per round (without steps_per_round)")
    steps_per_round: int | None = _setting(40, "optimiser steps per round (none or 0: epochs_per_round passes)",
                                           none=("none", "0"))
    threshold: float = _setting(0.5, "probability threshold of pseudo labels and metrics")
    pseudo_tta: bool = _setting(True, "pseudo-label from the average with the mirrored slice")
    ignore_band: tuple[float, float] | None = _setting((0.1, 0.9), "pseudo-label pixels with LO < p < HI carry no "
                                                                   "loss (none: every pixel does)", metavar="LO,HI")
    labelled_share: float | None = _setting(0.5, "share of every batch drawn from the labelled slices (none or 0: "
                                                 "uniform draws)", none=("none", "0"))
    polish_epochs: int = _setting(10, "after the last round, epochs on the labelled slices only (Semi-Inf-Net; 0: off)")
    polish_lr: float | None = _setting(None, "learning rate of the polish epochs (none: finetune_lr / 2)")
    tta: bool = _setting(True, "inference: average the mask with the mirrored slice's (lesion maps, live analysis)")

    def __post_init__(self):
        for name in ("sources", "ignore_band"):  # JSON brings tuples back as lists
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if not isinstance(self.size, int) or self.size <= 0 or self.size % 32:
            raise ConfigValueError("size", f"size {self.size} must be a positive multiple of 32")
        if self.encoder not in BACKBONES:
            raise ConfigValueError("encoder", f"unknown encoder {self.encoder!r}; choose one of {', '.join(BACKBONES)}")
        for name in ("epochs", "epochs_per_round", "per_round", "polish_epochs"):
            if getattr(self, name) < 0:
                raise ConfigValueError(name, f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ConfigValueError("batch_size", f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("lr", "finetune_lr", "polish_lr"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigValueError(name, f"{name} must be > 0, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ConfigValueError("precision", f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not self.sources or not set(self.sources) <= set(SEG_SOURCES):
            raise ConfigValueError("sources", f"sources {self.sources!r}: choose from {', '.join(SEG_SOURCES)}")
        if self.max_rounds is not None and self.max_rounds < 0:
            raise ConfigValueError("max_rounds", f"max_rounds must be >= 0 or None (all), got {self.max_rounds}")
        if self.steps_per_round is not None and self.steps_per_round < 1:
            raise ConfigValueError("steps_per_round", f"steps_per_round must be >= 1 or None (epochs_per_round "
                                                      f"passes), got {self.steps_per_round}")
        if not 0 <= self.threshold <= 1:
            raise ConfigValueError("threshold", f"threshold {self.threshold} must lie in [0, 1]")
        band = self.ignore_band
        if band is not None and (len(band) != 2 or not 0 <= band[0] <= self.threshold <= band[1] <= 1):
            raise ConfigValueError("ignore_band", f"ignore_band {band} must satisfy 0 <= lo <= threshold "
                                                  f"({self.threshold}) <= hi <= 1")
        if self.labelled_share is not None and not 0 < self.labelled_share < 1:
            raise ConfigValueError("labelled_share", f"labelled_share {self.labelled_share} must lie strictly "
                                                     "between 0 and 1 (None: uniform draws)")

    @property
    def finetune_lr_used(self) -> float:
        return self.lr * 0.5 if self.finetune_lr is None else self.finetune_lr

    @property
    def polish_lr_used(self) -> float:
        return self.finetune_lr_used * 0.5 if self.polish_lr is None else self.polish_lr

    @property
    def inference(self) -> dict:
        """segment()'s settings: every stored lesion map depends on them (cache keys) and live analysis uses them."""
        return {"precision": self.precision, "tta": self.tta}

    @classmethod
    def from_dict(cls, saved: dict) -> SegConfig:
        """The configuration a run saved (JSON lists back to tuples); keys it lacks take the defaults
        above. A key that is no setting is a TypeError naming it."""
        unknown = sorted(set(saved) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"not a SegConfig setting: {', '.join(unknown)}")
        return cls(**saved)

    def override(self, **changes) -> SegConfig:
        """A copy with `changes` (SegConfig field names; another name is a TypeError naming it)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"not a SegConfig setting: {', '.join(unknown)}")
        return replace(self, **changes)


STRATEGIES = ("G-H-I-F", "GHI-F", "GHIF")
JOINT_STRATEGIES = ("GHI-F", "GHIF")  # the branches train together (core.models.joint)
# the paper's Eq. 1: the default attention map, and the one joint training crops the heatmap branch's input with
EQ1 = Eq1Cam.name
# config.json's format: raised whenever a saved run needs rewriting to be read (`python -m train migrate`)
CONFIG_FORMAT = 2


@dataclass
class PipelineConfig:
    """Every setting of a pipeline run. Unset run settings (input, second_source, heads_second_source,
    branch_epochs) take the recipe's, hires_size twice image_size, so the saved configuration records what
    the run did. A value out of range is a ConfigValueError naming its field."""
    backbone: str = _setting("efficientnet_lite0", "backbone of every branch", choices=BACKBONES)
    init: str = _setting("imagenet", "backbone init: imagenet, scratch, or a checkpoint path")
    recipe: str = _setting(DEFAULT_RECIPE, "training recipe and the run settings it is meant with "
                                           "(core/training/recipes.py)", choices=tuple(sorted(RECIPES)))
    input: str | None = _setting(None, "what the networks see: the harmonised lung field (with the segmenter's "
                                       "lesions), or the whole slice (core/inputs/harmonise.py)",
                                 choices=INPUT_MODES, none=("recipe",))
    seed: int = _setting(0, "the run's seed (initialisation, augmentation, the second source's draw)")
    epochs: int | None = _setting(None, "every image stage's epoch count (short schedules, tests)", none=("recipe",))
    batch_size: int | None = _setting(None, "batch size of the image stages", none=("recipe",))
    branch_epochs: int | None = _setting(None, "epochs of the heatmap and infected stages (they start from the "
                                               "global backbone; none: --epochs, else the recipe's)", none=("recipe",))
    tau: float = _setting(0.75, "Eq. 2 threshold of the heatmap branch")
    cam: str = _setting(EQ1, f"attention map the heatmap crops are cut by (strategies {', '.join(JOINT_STRATEGIES)}: "
                             f"{EQ1})", choices=tuple(sorted(CAM_METHODS)))
    strategy: str = _setting("G-H-I-F", "training strategy (the paper's Table 3)", choices=STRATEGIES)
    image_size: int = _setting(224, "side of the slice fed to the backbones")
    hires_size: int | None = _setting(None, "side of the copy of the slice the crops are cut from (none: twice "
                                            "--image-size)", none=("none",))
    lesion_size: int = _setting(160, "side of each lung crop of the infected branch")
    branch_init: str = _setting("global", "heatmap and infected backbones start from the trained global backbone "
                                          "(fewer epochs on a CPU), or from --init (the paper's choice)",
                                choices=("global", "init"))
    # Algorithm 1 and the segmenter's inference; a dict is read as SegConfig settings (flags: --seg-*)
    seg: SegConfig = field(default_factory=SegConfig)
    segmenter: str | None = _setting(None, "a segmenter checkpoint (`python -m train infnet`) to reuse instead of "
                                           "running Algorithm 1 in this run")
    second_source: str | None = _setting(None, "semiseg-volumes: the global branch also trains on COVID-SemiSeg's CT "
                                               "volumes, both classes from one source, labelled by the segmenter "
                                               "(core/data/second_source.py); none: COVID-CT only",
                                         choices=SOURCES, none=("recipe",))
    heads_second_source: bool | None = _setting(None, "the vector heads (fusion, global+heatmap) train on the second "
                                                      "source's rows too", none=("recipe",))
    decision: str | None = _setting(None, "the run's decision: fusion (the paper's), or two-step (disease present x "
                                          "looks like COVID, fitted across sources: core/knowledge/decision.py; "
                                          "needs covid-ct-md/ in the data root)", choices=DECISIONS, none=("recipe",))
    audits: bool = _setting(True, "after training, the audits (shortcut, probe, fidelity, trust) at the sizes of "
                                  "their full commands (core/after_training.py); --no-audits skips them")
    precompute: bool = _setting(True, "after training, what the dashboard's pages read on a first visit (metrics "
                                      "with intervals, 3D maps, hover cards); --no-precompute skips it for a run "
                                      "made for tables (a page then computes what it needs on its visit)")
    config_format: int = field(default=CONFIG_FORMAT, init=False)

    def __post_init__(self):
        if isinstance(self.seg, dict):
            self.seg = SegConfig.from_dict(self.seg)
        if self.recipe not in RECIPES:
            raise ConfigValueError("recipe", f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        recipe = get_recipe(self.recipe)
        self.input = self.input or recipe.input
        self.second_source = self.second_source or recipe.second_source
        if self.heads_second_source is None:
            self.heads_second_source = recipe.heads_second_source
        self.decision = self.decision or recipe.decision
        if self.branch_epochs is None and self.epochs is None:  # --epochs overrides every stage
            self.branch_epochs = recipe.branch_epochs
        if self.hires_size is None:
            self.hires_size = 2 * self.image_size
        self._check()

    def _check(self) -> None:
        for name, allowed in (("backbone", BACKBONES), ("strategy", STRATEGIES), ("cam", CAM_METHODS),
                              ("branch_init", ("global", "init")), ("decision", DECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigValueError(name, f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.input not in INPUT_MODES:
            raise ConfigValueError("input", f"unknown input mode {self.input!r}; choose one of {', '.join(INPUT_MODES)}")
        if self.second_source not in SOURCES:
            raise ConfigValueError("second_source", f"unknown second source {self.second_source!r}; choose one of "
                                                    f"{', '.join(SOURCES)}")
        if self.heads_second_source and self.second_source == "none":
            raise ConfigValueError("heads_second_source", "heads_second_source needs a second source (recipe or "
                                                          "--second-source), not 'none'")
        if self.strategy in JOINT_STRATEGIES and self.cam != EQ1:
            raise ConfigValueError("cam", f"strategy {self.strategy} trains the heatmap branch on {EQ1} crops, so "
                                          f"its run is scored on them too: use cam {EQ1} (or strategy G-H-I-F)")
        if not 0 <= self.tau <= 1:
            raise ConfigValueError("tau", f"tau must lie in [0, 1], got {self.tau}")
        for name in ("image_size", "hires_size", "lesion_size"):
            if getattr(self, name) < 1:
                raise ConfigValueError(name, f"{name} must be a positive number of pixels, got {getattr(self, name)}")

    @classmethod
    def from_saved(cls, saved: dict, where: str = "RUN") -> PipelineConfig:
        """The configuration a run folder recorded (config.json "pipeline"); `where` names the run. A run saved
        in an older format is a RunError naming the command that migrates it."""
        if saved.get("config_format") != CONFIG_FORMAT:
            raise RunError(f"{where}: saved in an older configuration format ({saved.get('config_format', 1)}, "
                           f"now {CONFIG_FORMAT}); run `python -m train migrate {where}` once")
        return cls(**{k: v for k, v in saved.items() if k != "config_format"})

    @classmethod
    def of_run(cls, run) -> PipelineConfig:
        """The configuration of a run folder (core.runs.runfolder.RunFolder): the one way a reader gets it."""
        saved = run.config.get("pipeline")
        if not saved:
            raise RunError(f"{run.path}: no pipeline configuration; train it with `python -m train pipeline`")
        return cls.from_saved(saved, str(run.path))

    @property
    def input_version(self) -> str:
        """How this input is framed, the lung field's algorithm included (core.inputs.harmonise.version): part of the
        key of everything read through the run's frames and lung fields."""
        return version(self.input)

    def recipe_obj(self, branch: bool = False) -> Recipe:
        epochs = (self.branch_epochs or self.epochs) if branch else self.epochs
        return get_recipe(self.recipe, epochs=epochs, batch_size=self.batch_size)

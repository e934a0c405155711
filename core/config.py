"""One run's configuration: every setting of a pipeline run declared once, with its default, saved in the
run folder's config.json ("pipeline") and read back by every consumer (PipelineConfig.from_saved).
The segmenter's own settings are core.training.segmentation.SegConfig; the training schedules, core.training.recipes."""
from __future__ import annotations

from dataclasses import dataclass, field

from core.explain.cams import DEFAULT_CAM
from core.inputs.harmonise import LEGACY_INPUT
from core.training.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from core.training.segmentation import SegConfig

STRATEGIES = ("G-H-I-F", "GHI-F", "GHIF")
# what runs saved before a setting existed ran with (readers fill these in)
SAVED_BEFORE = {"input": LEGACY_INPUT, "second_source": "none", "heads_second_source": False}


@dataclass
class PipelineConfig:
    backbone: str = "efficientnet_lite0"
    init: str = "imagenet"
    recipe: str = DEFAULT_RECIPE
    # what the networks see (core.inputs.harmonise): "lungs" (the harmonised lung field) or "slice" (as it is);
    # None: the recipe's (core.training.recipes), like second_source and branch_epochs
    input: str | None = None
    seed: int = 0
    epochs: int | None = None  # override every image stage's epoch count (short schedules, tests)
    batch_size: int | None = None  # override the recipe's batch size
    branch_epochs: int | None = None  # heatmap and infected stages (they start from the global backbone)
    tau: float = 0.75
    cam: str = DEFAULT_CAM
    strategy: str = "G-H-I-F"
    image_size: int = 224
    hires_size: int = 448  # crops are cut from this copy of the slice
    lesion_size: int = 160  # each lung crop's side for the infected branch
    # "global": heatmap and infected backbones start from the trained global backbone (converges in
    # fewer epochs on CPU); "init": from --init like the global branch (the paper's choice).
    branch_init: str = "global"
    # Algorithm 1 and the segmenter's inference (core.training.segmentation.SegConfig: every default, README
    # "Segmenter"); a dict is read as SegConfig settings (keys it lacks: SegConfig's defaults).
    seg: SegConfig = field(default_factory=SegConfig)
    segmenter: str | None = None  # a trained segmenter checkpoint to reuse instead of running Algorithm 1
    # "semiseg-volumes": the global branch also trains on slices of COVID-SemiSeg's CT volumes, both
    # classes from one source, labelled by the segmenter (core.data.second_source); "none": COVID-CT only
    second_source: str | None = None
    # True: the vector heads (fusion, global+heatmap) train on the second source's rows too (their branch
    # vectors, computed by the trained branches); None: the recipe's
    heads_second_source: bool | None = None

    def __post_init__(self):
        if isinstance(self.seg, dict):
            self.seg = SegConfig.from_dict(self.seg)
        # unset run settings take the recipe's, so the saved config records what the run did
        recipe = get_recipe(self.recipe)
        self.input = self.input or recipe.input
        self.second_source = self.second_source or recipe.second_source
        if self.heads_second_source is None:
            self.heads_second_source = recipe.heads_second_source
        if self.branch_epochs is None and self.epochs is None:  # --epochs overrides every stage
            self.branch_epochs = recipe.branch_epochs

    @classmethod
    def from_saved(cls, saved: dict) -> "PipelineConfig":
        """The configuration a run folder recorded; settings it predates get the value it ran with."""
        saved = {**SAVED_BEFORE, **saved}
        if isinstance(saved.get("seg", {}), dict):
            # Seg keys a run predates: "tta" False (runs saved before the key segmented without the
            # mirrored pass; live analysis must match the lesion maps they stored). The training-only
            # keys take today's SegConfig defaults: the run's segmenter is trained by then, and its
            # infnet/metrics.json "config" records what Algorithm 1 ran with.
            saved["seg"] = SegConfig.from_dict({"tta": False, **saved.get("seg", {})})
        return cls(**saved)

    def recipe_obj(self, branch: bool = False) -> Recipe:
        epochs = (self.branch_epochs or self.epochs) if branch else self.epochs
        return get_recipe(self.recipe, epochs=epochs, batch_size=self.batch_size)

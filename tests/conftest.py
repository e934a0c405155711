"""Shared fixtures. The real data sets are read-only and live outside the project."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project has no pytest config and is not installed: make `import core` work from any directory.
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding covid-ct/ and semiseg/: $COVID_LAB_DATA, else ../shared/data beside the project.

    Missing data is a failure, not a skip: a skipped real-data test would let a broken setup pass green.
    """
    raw = os.environ.get("COVID_LAB_DATA")
    root = Path(raw) if raw else PROJECT_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        source = "COVID_LAB_DATA" if raw else "the default location (no COVID_LAB_DATA set)"
        pytest.fail(f"real data not found at {root} ({source}); set COVID_LAB_DATA to the folder "
                    "holding covid-ct/ and semiseg/", pytrace=False)
    return root


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A small phantom data set laid out like ../shared/data (generated, never committed)."""
    from core.data.phantom import write_dataset

    return write_dataset(tmp_path_factory.mktemp("phantoms"), {"train": 16, "val": 8, "test": 8},
                         n_seg_train=8, n_seg_test=6, n_unlabelled=10, size=96, seed=1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_image_cache(tmp_path_factory):
    """Tests never write into the project's .cache/."""
    os.environ["COVID_LAB_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))
    yield


@pytest.fixture(scope="module")
def module_scratch(tmp_path_factory):
    """`module_scratch(name)`: a fresh folder for one module's shared fixtures, removed when the module ends.

    Those fixtures hold copies of whole runs (checkpoints: hundreds of MB each); kept to the session's end, they
    add up to about 15 GB in `make test-all` (docs/testing.md, Disk).
    """
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_run(phantom_root, tmp_path_factory) -> Path:
    """A whole G-H-I-F run on the phantoms with a very short schedule: runs/<name> for the
    pipeline, prediction and dashboard tests. Returns the run folder."""
    from dataclasses import asdict

    from core.config import PipelineConfig, SegConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder
    from core.training.recipes import BEFORE_GUIDANCE
    from tests.phantom_sizes import SIZES

    runs = tmp_path_factory.mktemp("runs")
    run = RunFolder(runs / "tiny", create=True)
    # the recipe before guidance (whole slice): what most engine and dashboard tests read; the default
    # recipe's path is `guided_run`
    cfg = PipelineConfig(recipe=BEFORE_GUIDANCE, epochs=2, batch_size=8, **SIZES,
                         seg=SegConfig(size=64, epochs=3, steps_per_round=3, per_round=25, max_rounds=2,
                                       ignore_band=(0.2, 0.8), labelled_share=0.75, polish_epochs=0, tta=False),
                         audits=False)  # the audits' own tests add them (test_after_training.py)
    run.update_config(data_root=str(phantom_root), synthetic=True, pipeline=asdict(cfg))
    Pipeline(run, phantom_root, cfg, progress=False).run_all()
    return run.path


@pytest.fixture(scope="session")
def guided_run(phantom_root, tmp_path_factory) -> Path:
    """The default recipe's path end to end on the phantoms (harmonised lung-field input, CAM penalties
    outside the lungs and off the lesions, the second source for the global branch and the heads), one
    epoch a stage."""
    from dataclasses import asdict

    from core.config import PipelineConfig, SegConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder
    from core.training.recipes import DEFAULT_RECIPE
    from tests.phantom_sizes import SIZES

    run = RunFolder(tmp_path_factory.mktemp("runs") / "guided", create=True)
    cfg = PipelineConfig(recipe=DEFAULT_RECIPE, epochs=1, batch_size=8, **SIZES,
                         seg=SegConfig(size=64, epochs=2, steps_per_round=2, per_round=25, max_rounds=1,
                                       ignore_band=(0.2, 0.8), labelled_share=0.75, polish_epochs=0, tta=False),
                         audits=False)
    run.update_config(data_root=str(phantom_root), synthetic=True, pipeline=asdict(cfg))
    Pipeline(run, phantom_root, cfg, progress=False).run_all()
    return run.path


@pytest.fixture(scope="module")
def dash_env(synthetic_run):
    """$COVID_LAB_RUNS -> the synthetic run's folder; fewer bootstrap resamples (speed only)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COVID_LAB_RUNS", str(synthetic_run.parent))
    mp.setenv("COVID_LAB_BOOT", "40")
    yield synthetic_run
    mp.undo()


@pytest.fixture(scope="module")
def rv(dash_env):
    from core.runs.run_view import RunView

    return RunView(dash_env.parent, dash_env.name)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def train_cli(capsys):
    """`python -m train ARGS` run in this process: the command's own code and exit code, without a new
    interpreter's 3-5 s of imports. The entry point as a process is tested by tests/test_training.py's CLI tests."""
    def run(*args) -> CliResult:
        from train.__main__ import main

        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)
    return run

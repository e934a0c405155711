"""The engine's import structure, read from the source with `ast` (module-level and function-level imports
both count): no cycle among the modules of core, train and dashboard, no arrow running back up the packages
(core never imports train or dashboard, train never imports dashboard), and core respects one layer order
written below, where a lower layer never imports a higher one."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "train", "dashboard")

# core's layers, lowest first. A module belongs to the longest entry that prefixes its name: its folder,
# unless it is named on its own (the few modules that sit on another layer than their folder's, each with
# the reason). Within a layer any import is allowed (the cycle test still holds).
LAYERS = (
    ("core.training.runtime",),  # the process: DDP rank and barriers, autocast; imports nothing of core
    ("core.runs",),  # what a run folder keeps: checkpoints, the folder, feature caches, verdicts
    ("core.data",),  # data sets read into tensors
    ("core.inputs.boxes",),  # box geometry, shared by the maps' crops and the lesion crops
    ("core.explain",),  # attention maps, CAM methods, the fusion CAM
    ("core.models",),  # the networks, the segmenter and its inference
    ("core.runs.progress", "core.runs.eta"),  # the progress log: its stages in the network's order
    ("core.explain.fusion_cam",),  # the fusion decision's map: laid out by the network's branches
    ("core.knowledge.decision",),  # the two-step decision's weights: what predictions.csv's decision column reads
    ("core.results",),  # numbers from predictions
    ("core.inputs",),  # what a network is fed: fields and lesion crops come from a trained segmenter
    ("core.knowledge",),  # radiology facts of a slice or a scan: signs, zones, the scan decision rule
    ("core.data.second_source",),  # training rows labelled by a trained segmenter, framed as inputs are
    ("core.training.recipes",),  # named schedules: the run settings the configuration fills in
    ("core.config",),  # a run's settings
    ("core.training",),  # how the networks are trained
    ("core.feature_keys", "core.inference"),  # a whole run's caches, and a trained run on new slices
    # what reads a whole trained run: audits, fidelity, the run's tables, the dashboard's view, migration
    ("core.audits", "core.explain.fidelity", "core.results.tables", "core.runs.run_view", "core.runs.migrate"),
    ("core.trust",),  # whether a trained run's maps and decisions can be trusted: reads the whole run
    # other hospitals through a trained run (its rows carry the trust flag's distance); its patients in other windows
    ("core.audits.external", "core.audits.windows"),
    # per-source tables of those rows, the decision at a glance; the calls on new slices and scans, beside the run's
    # record on another hospital
    ("core.trust.slices", "core.results.external_tables", "core.results.window_tables", "core.results.glance",
     "core.trust.scan_call",
     "core.trust.calls"),
    ("core.pictures",),  # pictures of a run's slices, maps and the Data page, drawn once by precompute
    ("core.after_training",),  # the stages after training: the audits, the decision's fit, precompute
    ("core.pipeline",),  # a whole run: trains, caches, then the stages after training
    ("core.errors",),  # every user-error type, gathered for the commands
)


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its file (an imported name resolves to its module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    out = set()
    for imported in found:
        while imported and imported not in MODULES:
            imported = imported.rpartition(".")[0]
        if imported and imported != name:
            out.add(imported)
    return out


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}
CORE = sorted(n for n in GRAPH if n == "core" or n.startswith("core."))


def layer(name: str) -> int:
    matches = [(len(prefix), i) for i, group in enumerate(LAYERS) for prefix in group
               if name == prefix or name.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{name} is on no layer: add its folder (or it) to LAYERS")
    return max(matches)[1]


def test_the_reader_sees_both_kinds_of_import():
    assert "core.config" in GRAPH["core.pipeline"]  # module level
    assert "core.inference" in GRAPH["dashboard.data"]  # inside a function


# The packages, lowest first: a package imports only those before it.
PACKAGE_ORDER = {"core": 0, "train": 1, "dashboard": 2}


def cycles_among(names: set[str]) -> list[list[str]]:
    """Every import cycle among `names` that a depth-first walk of GRAPH meets, each as a closed path."""
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(GRAPH[n] & names):
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(names):
        if n not in state:
            visit(n)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    names = {"core.config", "core.pipeline"}
    saved = {n: GRAPH[n] for n in names}
    try:
        GRAPH["core.config"] = saved["core.config"] | {"core.pipeline"}  # core.pipeline imports core.config
        assert cycles_among(names) == [["core.config", "core.pipeline", "core.config"]]
    finally:
        GRAPH.update(saved)


def test_no_cycle_among_the_modules_of_core_train_and_dashboard():
    cycles = cycles_among(set(GRAPH))
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_later_one(package):
    """core never imports train or dashboard; train never imports dashboard."""
    bad = {n: sorted(m for m in GRAPH[n] if PACKAGE_ORDER[m.split(".")[0]] > PACKAGE_ORDER[package])
           for n in GRAPH if n.split(".")[0] == package}
    assert not {n: m for n, m in bad.items() if m}


@pytest.mark.parametrize("name", [n for n in CORE if n != "core"])
def test_no_import_runs_back_up(name):
    up = sorted(m for m in GRAPH[name] if m in GRAPH and m.startswith("core.") and layer(m) > layer(name))
    assert not up, f"{name} (layer {layer(name)}) imports higher layers: " + \
        ", ".join(f"{m} (layer {layer(m)})" for m in up)

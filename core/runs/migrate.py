"""Bring a run folder saved in an older format up to today's, once (`python -m train migrate RUN`).

Readers accept only today's configuration format (core.config.CONFIG_FORMAT) and refuse an older run with a
line that names this command. Migrating rewrites what the run predates, each with the value it ran with,
and never retrains or recomputes anything:

- config.json "pipeline": every setting it predates, as the run ran: input `slice`, second source `none`,
  heads_second_source off; its segmenter's mirrored inference pass (seg "tta") off; any other setting at
  the default of its time (today's: the settings that changed defaults were recorded from the start). Then
  the format number. The original is kept beside it (BACKUP).
- checkpoints of the heads and the infected branch: the vector sizes they were built from ("sizes"), added
  (their weights untouched), so TrainedRun rebuilds them without guessing.
- features/index.json: written where the run predates it, naming each cached entry that is the only one of
  its name; where several compete, `train pipeline --resume` records the run's own.
- a lesion-map entry keyed as its time did (by the partial segmenter settings before SegConfig, or without
  its input for a run fed the whole slice): saved again under today's key (same segmenter, size, mirrored pass
  and input), so `train pipeline --resume` finds it instead of segmenting again.
- second_source_rows recorded without the rows' key: the key is taken from the run's own second-source
  vectors entry (the same rows) when it has one; without it a resume that reaches the second source
  cannot verify its rows and refuses (core.pipeline).

- the joint network's checkpoints (joint/best.pt, joint/last.pt of GHI-F and GHIF runs) saved when it named its
  branches g, h, inf and fusion: the same weights under today's names (its branches by stage). Checked on
  every run, whatever its configuration format.

A run already in today's format is otherwise left alone. Migrating twice changes nothing.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict

from core.config import CONFIG_FORMAT, ConfigValueError, PipelineConfig, SegConfig
from core.feature_keys import FeatureKeys
from core.inputs.fields import FieldFinder
from core.models import network
from core.runs import feature_cache as fc
from core.runs.checkpoint import load_checkpoint, save_checkpoint
from core.runs.runfolder import RunError, RunFolder

BACKUP = "config.before-migrate.json"  # the original config.json, kept beside it
# what a run saved before a setting existed ran with
RAN_WITH = {"input": "slice", "second_source": "none", "heads_second_source": False}
SEG_RAN_WITH = {"tta": False}  # lesion maps and live analysis without the mirrored pass


def current_config(saved: dict) -> dict:
    """An older "pipeline" section with everything it predates filled in as the run ran (see the module)."""
    old = {**RAN_WITH, **{k: v for k, v in saved.items() if k != "config_format"}}
    try:
        old["seg"] = SegConfig.from_dict({**SEG_RAN_WITH, **old.get("seg", {})})
        return json.loads(json.dumps(asdict(PipelineConfig(**old))))
    except (ConfigValueError, TypeError) as exc:  # a value out of today's range, a setting that is gone
        raise RunError(f"its configuration cannot be read today ({exc}); train it again") from None


def _sizes(run: RunFolder) -> list[str]:
    """Add "sizes" to the checkpoints built from vector sizes that predate recording them."""
    k = None
    changed = []
    for stage in ("infected", "global+heatmap", "fusion"):
        path = run.stage(stage) / "best.pt"
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        if "sizes" in ckpt:
            continue
        if k is None:  # the pooled width: the global branch's classifier reads one pooled vector
            k = load_checkpoint(run.stage("global") / "best.pt")["model"]["fc.weight"].shape[1]
        name = network.BY_STAGE[stage].name
        ckpt["sizes"] = {"g": k} if stage == "infected" else network.sizes(k, network.HEADS[name])
        save_checkpoint(ckpt, path)
        changed.append(f"{stage}/best.pt: vector sizes {ckpt['sizes']} recorded")
    return changed


def _entries(folder, name: str) -> list[dict]:
    """The key parts of every cached entry called `name`."""
    out = []
    for meta in sorted(folder.glob(f"{name}-*.json")):
        try:
            out.append(json.loads(meta.read_text())["parts"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def _recorded(folder) -> dict:
    """features/index.json: each cache name -> the key of the run's own entry ({} when there is none)."""
    index = folder / fc.INDEX
    return json.loads(index.read_text()) if index.exists() else {}


def _index(run: RunFolder) -> list[str]:
    folder = run.features_dir
    if not folder.is_dir() or (folder / fc.INDEX).exists():
        return []
    names = sorted({p.name.rsplit("-", 1)[0] for p in folder.glob("*-*.json")})
    changed = []
    for name in names:
        entries = _entries(folder, name)
        if len(entries) == 1:
            fc.remember(folder, name, entries[0])
            changed.append(f"features/{fc.INDEX}: '{name}' recorded as the run's own")
        else:
            changed.append(f"features/{fc.INDEX}: {len(entries)} cached '{name}' entries, none recorded "
                           "(`python -m train pipeline --resume` records the run's own)")
    return changed


def _lesions(run: RunFolder, cfg: PipelineConfig) -> list[str]:
    """Save again under today's key the run's lesion entry keyed as its time did: by partial segmenter settings
    (before SegConfig), or without its input (runs fed the whole slice)."""
    folder = run.features_dir
    own = fc.current(folder, "lesions") if folder.is_dir() else None
    parts = next((p for p in _entries(folder, "lesions") if fc.key_of(p) == _recorded(folder).get("lesions")), None)
    if own is None or parts is None:
        return []
    seg = json.loads(json.dumps(asdict(cfg.seg)))
    new = {**parts, "seg": seg, "input": FeatureKeys(cfg, run, FieldFinder.of_run(run, cfg)).input}
    old_seg = parts.get("seg")
    same_maps = (isinstance(old_seg, dict) and old_seg.get("size") == seg["size"]
                 and old_seg.get("tta", False) == seg["tta"] and parts.get("input", new["input"]) == new["input"])
    if new == parts or not same_maps:  # current, or made with other settings than the run's: not its maps
        return []
    fc.save_cached(folder, "lesions", new, own)
    fc.remember(folder, "lesions", new)
    return [f"features: the lesion maps saved again under today's key ({fc.key_of(new)})"]


def _second_source_rows(run: RunFolder, config: dict) -> tuple[dict, list[str]]:
    rows = config.get("second_source_rows")
    if not rows or "keys" in rows:
        return {}, []
    entries = _entries(run.features_dir, "second-source-vectors") if run.features_dir.is_dir() else []
    keyed = [p for p in entries if fc.key_of(p) == _recorded(run.features_dir).get("second-source-vectors")]
    own = keyed[0] if keyed else (entries[0] if len(entries) == 1 else None)
    if own is None:
        return {}, [("second_source_rows: recorded without the rows' key and no second-source vectors say which "
                     "rows they were: a resume that reaches the second source will refuse")]
    return ({"second_source_rows": {**rows, "keys": own["keys"]}},
            ["second_source_rows: the rows' key taken from the run's second-source vectors"])


JOINT_NAMES = {"g.": "global", "h.": "heatmap", "inf.": "infected", "fusion.": "fusion"}  # JointNet's old names


def _joint_weights(run: RunFolder) -> list[str]:
    """Rename the joint network's weights saved under its old branch names (JOINT_NAMES) to today's."""
    changed = []
    for path in (run.stage("joint") / "best.pt", run.stage("joint") / "last.pt"):
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        old = ckpt["model"]
        rename = lambda k: next((f"models.{stage}.{k[len(p):]}" for p, stage in JOINT_NAMES.items()
                                 if k.startswith(p)), k)
        if not any(k != rename(k) for k in old):
            continue
        ckpt["model"] = {rename(k): v for k, v in old.items()}
        save_checkpoint(ckpt, path)
        changed.append(f"joint/{path.name}: its branches' weights renamed to today's names (models.<stage>)")
    return changed


def migrate(path) -> list[str]:
    """Migrate the run folder at `path`; returns one line per change ([]: it was already current)."""
    run = RunFolder(path)
    config = run.config
    saved = config.get("pipeline")
    if not saved:
        raise RunError(f"{run.path}: no pipeline configuration to migrate")
    if saved.get("config_format") == CONFIG_FORMAT:
        return _joint_weights(run)
    try:
        pipeline = current_config(saved)
    except RunError as exc:
        raise RunError(f"{run.path}: {exc}") from None
    changed = [f"config.json: {k} = {json.dumps(pipeline[k])} (not recorded before)" for k in pipeline
               if k not in saved and k != "config_format"]
    changed += [f"config.json: seg.{k} = {json.dumps(v)} (not recorded before)" for k, v in pipeline["seg"].items()
                if k not in saved.get("seg", {})]
    changed += _joint_weights(run) + _sizes(run) + _index(run)
    changed += _lesions(run, PipelineConfig.from_saved(pipeline, str(run.path)))
    rows, lines = _second_source_rows(run, config)
    changed += lines
    if not (run.path / BACKUP).exists():  # the first migration's original stays the original
        shutil.copyfile(run.path / "config.json", run.path / BACKUP)
    run.update_config(pipeline=pipeline, **rows)
    return [*changed, (f"config.json: configuration format {saved.get('config_format', 1)} -> {CONFIG_FORMAT} "
                       f"(the original kept as {BACKUP})")]

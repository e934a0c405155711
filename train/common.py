"""Arguments and set-up shared by every `python -m train` command."""
from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path

import torch

from core.errors import UsageError

DEVICES = "auto, cpu, cuda, cuda:N"  # what --device accepts (pick_device)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data); "
                        "omitted: the embedded synthetic phantom data set")


def add_run_args(p: argparse.ArgumentParser, schedule: bool = True, seed: bool = True) -> None:
    """--device --no-progress, with `seed` --seed, and with `schedule` --epochs --batch-size (recipe overrides;
    a command whose settings are a config dataclass derives those from its fields instead)."""
    if seed:
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help=f"{DEVICES} (auto: CUDA when present)")
    if schedule:
        p.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
        p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


# ------------------------------------------------------------------ flags derived from a dataclass

def _none_words(f: dataclasses.Field) -> tuple[str, ...]:
    words = f.metadata.get("none", ("none",))
    return (words,) if isinstance(words, str) else tuple(words)


def _value_parser(kind: type, none_words: tuple[str, ...], flag: str, choices=None):
    """str -> kind, one of `choices` when given; one of `none_words` -> None (an optional setting)."""
    alt = f" or {'/'.join(repr(w) for w in none_words)}" if none_words else ""

    def parse(text: str):
        if text.strip().lower() in none_words:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected {kind.__name__}{alt}, got {text!r}") from None
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(f"{flag}: choose one of {', '.join(map(str, choices))}{alt}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _tuple_parser(item: type, length: int | None, none_words: tuple[str, ...], flag: str):
    """'a,b,...' -> a tuple of `item` (`length` of them when fixed); one of `none_words` -> None."""
    one = _value_parser(item, (), flag)

    def parse(text: str):
        if text.strip().lower() in none_words:
            return None
        values = tuple(one(v.strip()) for v in text.split(",") if v.strip())
        if length is not None and len(values) != length:
            raise argparse.ArgumentTypeError(f"{flag}: expected {length} comma-separated values, got {text!r}")
        return values
    parse.__name__ = "list"
    return parse


def _show(value, none_words) -> str:
    if value is None:
        return none_words[0] if none_words else "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def config_fields(cls, only=None) -> list[dataclasses.Field]:
    """The fields of the dataclass `cls` a command sets by flags: those its constructor takes, except nested
    dataclasses (their own flags carry a prefix); `only`: these names alone (a TypeError names any other)."""
    hints = typing.get_type_hints(cls)
    settable = [f for f in dataclasses.fields(cls) if f.init and not dataclasses.is_dataclass(hints[f.name])]
    if only is None:
        return settable
    unknown = sorted(set(only) - {f.name for f in settable})
    if unknown:
        raise TypeError(f"not a {cls.__name__} setting: {', '.join(unknown)}")
    return [f for f in settable if f.name in only]


def add_config_args(p: argparse.ArgumentParser, cls, prefix: str = "", defaults: dict | None = None,
                    title: str | None = None, only=None) -> None:
    """One flag --{prefix}{field-name-with-dashes} per field of the dataclass `cls` (config_fields; `only`:
    these fields alone), typed by its annotation (int, float, str; bool: --x/--no-x; tuple: a comma list;
    Optional: also its "none" words, metadata "none", default 'none'), help = metadata "help", choices =
    metadata "choices", metavar = metadata "metavar",
    default = the field's default (`defaults`: a command's own overrides by field name, shown in
    --help). `config_from_args` turns the parsed flags back into `cls`."""
    hints = typing.get_type_hints(cls)
    group = p.add_argument_group(title) if title else p
    own = dict(defaults or {})
    unknown = sorted(set(own) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"defaults: not a {cls.__name__} field: {', '.join(unknown)}")
    for f in config_fields(cls, only):
        flag = "--" + prefix + f.name.replace("_", "-")
        dest = (prefix + f.name).replace("-", "_")
        default = own[f.name] if f.name in own else \
            f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind, optional = hints[f.name], False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            optional, kind = len(args) < len(typing.get_args(kind)), args[0]
        none_words = _none_words(f) if optional else ()
        help_ = f.metadata.get("help", "")
        if kind is bool:
            shown = _show(default, none_words) if default is None else ("on" if default else "off")
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=f"{help_} (default: {shown})")
            continue
        if typing.get_origin(kind) is tuple:
            items = typing.get_args(kind)
            fixed = None if len(items) == 2 and items[1] is Ellipsis else len(items)
            parse, metavar = _tuple_parser(items[0], fixed, none_words, flag), "A,B" if fixed == 2 else "A,B,..."
        elif optional and "choices" in f.metadata:  # its choices and its "none" words (parsed to None)
            choices = f.metadata["choices"]
            parse, metavar = _value_parser(kind, none_words, flag, choices), "{" + ",".join((*choices, *none_words)) + "}"
        else:
            parse, metavar = _value_parser(kind, none_words, flag), None
        extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata and not optional else {}
        metavar = f.metadata.get("metavar", metavar)
        group.add_argument(flag, dest=dest, type=parse, default=default, metavar=metavar,
                           help=f"{help_} (default: {_show(default, none_words)})".replace("%", "%%"), **extra)


def config_from_args(args: argparse.Namespace, cls, prefix: str = "", **changes):
    """The `cls` the flags of `add_config_args(p, cls, prefix)` describe: built from every such flag's value,
    then `changes` (fields without a flag take their defaults). A value the dataclass refuses (ValueError)
    is a UsageError naming the flag when the error names its field (`.field`)."""
    values = {}
    for f in config_fields(cls):
        dest = (prefix + f.name).replace("-", "_")
        if hasattr(args, dest):
            values[f.name] = getattr(args, dest)
    try:
        return cls(**{**values, **changes})
    except ValueError as e:
        name = getattr(e, "field", None)
        flag = f"--{prefix}{name.replace('_', '-')}: " if name and name not in changes else ""
        raise UsageError(f"{flag}{e}") from None


def pick_device(name: str) -> torch.device:
    """--device as a torch device; a name torch does not know, or CUDA where there is none, is a UsageError
    (torch would say so only at the first tensor moved, with a traceback)."""
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: not a device; use one of {DEVICES}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UsageError(f"--device {name}: no CUDA device is available on this machine; use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return True


# ------------------------------------------------------------------ values shared by the run-analysis commands

def cam_methods(text: str) -> list[str]:
    """'a,b' -> CAM method names (core.explain.cams), each checked, duplicates dropped."""
    from core.explain.cams import CAM_METHODS

    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in CAM_METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown CAM method(s) {', '.join(bad) or '(none given)'}; "
                                         f"choose from {', '.join(CAM_METHODS)}")
    return list(dict.fromkeys(names))


def _integer(text: str, low: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
    return v


def positive_int(text: str) -> int:
    return _integer(text, 1, "positive")


def nonnegative_int(text: str) -> int:
    return _integer(text, 0, "non-negative")


def run_data_root(folder, given: str | None) -> Path:
    """The data folder a command on a run reads: --data-root, else the run's data_root (config.json); checked."""
    from core.data.roots import DataError

    root = given or folder.config.get("data_root")
    if not root:
        raise DataError(f"{folder.path}: no data_root in its config.json; pass --data-root")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} not found" + ("" if given else f" (the data_root of {folder.path}); "
                                                           "pass --data-root"))
    return root

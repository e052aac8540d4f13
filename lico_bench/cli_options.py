"""From the command line to a config: ``--config`` files and flags -> :class:`TrainConfig`
(:func:`train_config`) and :class:`RunSpec` (:func:`run_spec`). Each option is a dataclass
field (lico_bench.config.add_field_flags); here are only the flags whose form differs from
``--field-name`` and how their strings become values. Precedence: dataclass defaults <
preset (train) < ``--config`` file < flags given."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

from .config import Flag
from .errors import UserError


def config_flag(s, command: str) -> None:
    s.add_argument("--config", metavar="FILE",
                   help=f"YAML, TOML or JSON file of {command} options (keys: the flags' names "
                        "with _ for -); flags given too override it (examples: configs/)")


# train: every TrainConfig field is a flag (lico_bench.config.add_field_flags). The
# exceptions: --preset, whose default is chosen by the dataset, not the field's "quick";
# --keep-epochs, one flag with several values (--keep-epochs 1 2 5 10).
_TRAIN_FLAGS = {
    "preset": Flag("--preset", help="recipe: quick (shapes default), paper (the paper's on shapes), "
                                    "cifar10, cifar100, svhn, imagenet (default: by dataset)"),
    "keep_epochs": Flag("--keep-epochs", {"type": int, "nargs": "+", "metavar": "E"}),
}


def train_config(args: argparse.Namespace):
    """``args`` (parsed ``train`` flags) -> TrainConfig: dataclass defaults < preset <
    ``--config`` file < flags given."""
    from .config import config_values, given_flags, read_config_file
    from .train import TrainConfig, make_config

    values = {}
    given = given_flags(args, args._fields)
    if args.config:
        values = config_values(TrainConfig, read_config_file(args.config), "train",
                               repr(str(args.config)))
        _check_file_folders(values, given, TrainConfig, ("out",), args.config)
    values.update(given)
    return make_config(values.pop("preset", None), **values)


def _parse_kv_options(items, what: str) -> dict:
    """``NAME.KEY=VALUE`` items -> {NAME: {KEY: value}}; values parsed as JSON when they can be."""
    import json

    out: dict = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"{what} option {item!r} is not NAME.KEY=VALUE (e.g. rise.N=2000).")
        lhs, value = item.split("=", 1)
        name, key = lhs.rsplit(".", 1)
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if key in out.get(name, {}):  # the last one would win unseen
            raise UserError(f"{what} option {name}.{key} is given twice; give it once.")
        out.setdefault(name, {})[key] = parsed
    return out


def _parse_flat_options(items, flag: str) -> dict:
    """``KEY=VALUE`` items -> {KEY: value}; values parsed as JSON when they can be."""
    import json

    out: dict = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserError(f"{flag} {item!r} is not KEY=VALUE (e.g. n_train=256).")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _parse_checkpoints(items: List[str], values: dict) -> Dict[str, str]:
    """``--checkpoint`` items, ``MODEL=PATH`` or (with one model, ``values["models"]`` or
    the default) ``PATH`` -> {model: path}."""
    models = values.get("models") or ["lico_r18"]
    out = {}
    for item in items:
        if "=" in item:
            name, path = item.split("=", 1)
        elif len(models) <= 1:
            name, path = models[0], item
        else:
            raise UserError(f"--checkpoint {item!r}: with several models write MODEL=PATH.")
        out[name] = path
    return out


# run: every RunSpec field is a flag (lico_bench.config.add_field_flags) but these, whose
# flag differs from ``--field-name`` in name or form: singular repeatable names, comma lists,
# NAME.KEY=VALUE items; ``convert`` turns the given strings into the field's value (after the
# other flags, which it may read, e.g. --checkpoint's models). --train/--no-train is the
# field ``train`` as generated.
_RUN_FLAGS = {
    "models": Flag("--model", {"action": "append", "metavar": "MODEL"}),
    "methods": Flag("--method", {"action": "append", "metavar": "METHOD"}),
    "metrics": Flag("--metrics", {"action": "append", "metavar": "M1,M2"}),
    "seeds": Flag("--seeds", {"type": int, "nargs": "+"}),
    "checkpoints": Flag("--checkpoint", {"action": "append", "metavar": "[MODEL=]PATH"}),
    "method_options": Flag("--method-option", {"action": "append", "metavar": "METHOD.KEY=VALUE"}),
    "metric_options": Flag("--metric-option", {"action": "append", "metavar": "METRIC.KEY=VALUE"}),
    "train_options": Flag("--train-option", {"action": "append", "metavar": "KEY=VALUE"}),
}
_RUN_CONVERT = {
    "metrics": lambda items, values: [m for part in items for m in part.split(",") if m],
    "checkpoints": _parse_checkpoints,
    "method_options": lambda items, values: _parse_kv_options(items, "method"),
    "metric_options": lambda items, values: _parse_kv_options(items, "metric"),
    "train_options": lambda items, values: _parse_flat_options(items, "--train-option"),
}


def _merge_option(name: str, old, new):
    """A flag's value over a config file's: dicts merge (``--method-option rise.N=...``
    changes one option of the file's ``method_options``), anything else is replaced."""
    if name in ("method_options", "metric_options") and isinstance(old, dict):
        return {**old, **{k: {**old.get(k, {}), **v} for k, v in new.items()}}
    if name in ("checkpoints", "train_options") and isinstance(old, dict):
        return {**old, **new}
    return new


def _check_file_folders(values: dict, given: dict, cls: type, names: tuple, source) -> None:
    """A config file or manifest does not choose where a command writes: an output folder
    in it (run: ``out``, ``runs``; train: ``out``) other than the default must be repeated
    with its flag (UserError otherwise), absolute, climbing out with ``..`` or relative
    alike, so that a file from elsewhere cannot aim a command at a folder the user did not
    name."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for name in names:
        value = values.get(name)
        if value is None or value == defaults[name] or name in given:
            continue
        p = Path(str(value))
        where = ", outside the working directory" if p.is_absolute() or ".." in p.parts else ""
        flag = f"--{name}"
        raise UserError(f"{str(source)!r} sets {name} to {str(value)!r}{where}; a file does not "
                        f"choose where results are written: pass {flag} {str(value)!r} to "
                        f"confirm it, or another {flag}.")


def run_spec(args: argparse.Namespace):
    """``args`` (parsed ``run`` flags) -> RunSpec: RunSpec defaults < ``--config`` file (a
    config file, or a manifest.json: its spec) < flags; or, with ``--from-manifest``,
    the manifest's spec with ``--out`` applied."""
    from .bench import RunSpec
    from .bench.manifest import is_manifest, read_manifest
    from .config import config_values, given_flags, read_config_file

    given = given_flags(args, args._fields)
    if args.from_manifest:
        extra = [args._fields[k] for k in given if k not in ("out", "runs")] + \
            (["--config"] if args.config else [])
        if extra:
            raise UserError(f"--from-manifest takes every option from the manifest; drop "
                            f"{', '.join(extra)} (only --out, --runs and --quiet go with it).")
        man = read_manifest(args.from_manifest, "rerun")
        where = f"manifest {str(Path(args.from_manifest))!r}"
        try:
            RunSpec.from_dict(man["spec"])  # unknown keys: the message --from-manifest gave
        except (UserError, TypeError) as e:
            raise UserError(f"{where}: {e}") from None
        values = config_values(RunSpec, man["spec"], "run", where)
    elif args.config:
        data = read_config_file(args.config)
        if is_manifest(data):  # a manifest.json: its spec is the config
            data = read_manifest(args.config, "rerun")["spec"]
        values = config_values(RunSpec, data, "run", repr(str(args.config)))
    else:
        values = {}
    if args.from_manifest or args.config:
        _check_file_folders(values, given, RunSpec, ("out", "runs"),
                            args.from_manifest or args.config)
    for name, value in given.items():
        if name in _RUN_CONVERT:
            continue
        values[name] = value
    for name, convert in _RUN_CONVERT.items():  # after the others: --checkpoint reads the models
        if name in given:
            values[name] = _merge_option(name, values.get(name), convert(given[name], values))
    spec = RunSpec(**values)
    from .bench.spec import check_grid_options

    check_grid_options(spec, given)   # a grid flag without --grid: before anything is written
    return spec

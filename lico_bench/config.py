"""Typed configuration: dataclasses built from plain dicts and config files, unknown keys an
error, and command-line flags derived from the fields.

Each option is written once, as a dataclass field whose ``metadata["help"]`` is its help
text (:func:`option`) and whose type hint says its type and range (the hints of
:mod:`lico_bench.options`: ``Annotated[int, Range(1)]``, ``Literal[...]``, ``Optional[X]``).
From that one field come

* its command-line flag (:func:`add_field_flags`): ``--field-name`` with the right type,
  ``--x/--no-x`` for a bool, repeatable for a list;
* its key in a ``--config`` file (:func:`load_config_file`, YAML, TOML or JSON), typed as the
  field; an unknown key is a one-line error naming the closest valid one.

Precedence: dataclass defaults < preset (training) < config file < command-line flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Type, TypeVar

from .errors import UserError

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, *, help: str,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help text (``metadata["help"]``): the one place an option
    is described; its flag and its config-file key are derived from it."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"help": help})


def strict_from_dict(cls: Type[T], d: Dict[str, Any], what: str) -> T:
    """``cls(**d)`` for a dataclass ``cls``; an unknown key is a one-line :class:`UserError`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return cls(**d)


def field_hints(cls: type) -> Dict[str, Any]:
    """field name -> its type hint, ``Annotated`` ranges kept (``cls``: a dataclass)."""
    return typing.get_type_hints(cls, include_extras=True)


def closest(key: str, known: Iterable[str]) -> Optional[str]:
    """The known name closest to ``key`` (difflib), or None when none is close."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return close[0] if close else None


def check_field_value(hint: Any, value: Any, label: str, where: str = "") -> Any:
    """``value`` checked against a field's type ``hint`` (:func:`lico_bench.options.check_value`,
    and each item of a ``List[X]``); returned typed (an int for a float field becomes a float).
    ``label`` names the option and ``where`` (e.g. "in FILE") its source in the one-line
    :class:`UserError`."""
    from .options import _split, check_value

    out = check_value(hint, value, f"{label} {where}".strip())
    base = _split(hint)[0]
    if typing.get_origin(base) in (list, tuple) and out is not None:
        # List[X] or Tuple[X, ...] (ModelCfg's mean, std and class names)
        item = (typing.get_args(base) or (Any,))[0]
        out = [check_value(item, v, f"{label}[{i}] {where}".strip()) for i, v in enumerate(out)]
    if typing.get_origin(base) is dict and out is not None:
        # each key and value of a Dict[K, V] too (``checkpoints: {m: [1, 2]}`` and
        # ``method_options: {gradcam: "x"}`` were tracebacks further on)
        key_hint, value_hint = typing.get_args(base) or (Any, Any)
        out = {check_value(key_hint, k, f"{label} key {k!r} {where}".strip()):
               check_field_value(value_hint, v, f"{label}[{k!r}]", where)
               for k, v in out.items()}
    return out


# ---------------------------------------------------------------------------- config files
def read_config_file(path: Path) -> Any:
    """The data of a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) file, read as data
    (``yaml.safe_load``: a config file never runs code). A missing or malformed file is a
    one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist; pass a YAML, TOML or JSON "
                        "file (see configs/).")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        parse, kind, errors = yaml.safe_load, "YAML", (yaml.YAMLError, ValueError)
    elif suffix == ".toml":
        import tomllib

        parse, kind, errors = tomllib.loads, "TOML", (ValueError,)  # TOMLDecodeError
    elif suffix == ".json":
        parse, kind, errors = json.loads, "JSON", (ValueError,)
    else:
        parse = None
    if parse is not None:
        from .io import check_nesting, read_bounded_text

        what = f"config file {str(path)!r}"
        try:
            # bounded: a regular file (not a FIFO or /dev/zero) of at most 16 MiB, nesting at
            # most 32 deep (a deeper one was a RecursionError traceback)
            return check_nesting(parse(read_bounded_text(path, what)), what)
        except RecursionError:
            raise UserError(f"{what} nests too deeply to parse; lico-bench configs nest "
                            f"4 levels.") from None
        except errors as e:  # UnicodeDecodeError is a ValueError too
            raise UserError(f"config file {str(path)!r} is not readable {kind} "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:160]}).") from None
    raise UserError(f"config file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; "
                    "use .yaml, .yml, .toml or .json.")


def config_values(cls: type, data: Any, what: str, source: str) -> Dict[str, Any]:
    """The options in ``data`` (a config file's mapping, keys = ``cls``' field names),
    each checked against its field's type. An unknown key is a one-line :class:`UserError`
    naming the closest valid key; ``what`` ("run", "training") and ``source`` (the file)
    name the option in messages."""
    if data is None:  # an empty YAML file: no options, the defaults
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source} holds a {type(data).__name__}, not a mapping of {what} "
                        "options (key: value).")
    hints = field_hints(cls)
    out = {}
    for key, value in data.items():
        if key not in hints:
            near = closest(str(key), hints)
            raise UserError(f"unknown {what} option {key!r} in {source}"
                            + (f"; did you mean {near!r}?" if near else
                               f"; known: {', '.join(sorted(hints))}."))
        if isinstance(value, str) and _float_field(hints[key]):
            try:  # YAML 1.1 reads 1e-3 (no dot) as text: say so rather than "not a number"
                float(value)
                raise UserError(f"{what} option {key} in {source} must be a number, got the text "
                                f"{value!r}; write it with a dot (e.g. 1.0e-3) or unquoted.")
            except ValueError:
                pass
        out[key] = check_field_value(hints[key], value, f"{what} option {key}", f"in {source}")
    return out


def _float_field(hint: Any) -> bool:
    from .options import _split

    return _split(hint)[0] is float


# ---------------------------------------------------------------------------- flags
@dataclasses.dataclass(frozen=True)
class Flag:
    """How a field's flag differs from the generated ``--field-name`` (an exception of a
    command's flag table). ``kwargs`` go to ``add_argument`` as given (``action``,
    ``nargs``, ``metavar``, ``type``...); ``help`` replaces the field's help text."""

    flag: str
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    help: Optional[str] = None


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_field_flags(parser: argparse.ArgumentParser, cls: type,
                    exceptions: Optional[Dict[str, Flag]] = None,
                    skip: Iterable[str] = (),
                    default_note: Callable[[str, Any], str] = lambda name, d: f"default: {d}",
                    ) -> Dict[str, str]:
    """One flag per field of dataclass ``cls`` (but ``skip``), typed as the field; fields
    in ``exceptions`` get that flag instead. A flag that is not given leaves no attribute
    (``argparse.SUPPRESS``), so a config file's value or the dataclass default stays.
    ``default_note(name, default)`` words the default in the help (a preset may change it).
    Returns {field name: flag} for messages."""
    exceptions = exceptions or {}
    hints = field_hints(cls)
    flags = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_ = f.metadata.get("help")
        if f.name in exceptions:
            ex = exceptions[f.name]
            parser.add_argument(ex.flag, dest=f.name, default=argparse.SUPPRESS,
                                help=ex.help or help_, **ex.kwargs)
            flags[f.name] = ex.flag
            continue
        flag = flag_name(f.name)
        kwargs = _flag_kwargs(hints[f.name], flag)
        default = f.default if f.default is not dataclasses.MISSING else None
        if help_ is not None and kwargs.get("action") is not argparse.BooleanOptionalAction \
                and default is not None:
            help_ = f"{help_} ({default_note(f.name, default)})"
        elif kwargs.get("action") is argparse.BooleanOptionalAction:
            flag_default = ('--' if default else '--no-') + f.name.replace('_', '-')
            help_ = f"{help_ or ''} ({default_note(f.name, flag_default)})"
        parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_, **kwargs)
        flags[f.name] = flag
    return flags


def _flag_kwargs(hint: Any, flag: str) -> Dict[str, Any]:
    """``add_argument`` keywords for a field of type ``hint``."""
    from .options import _split

    base, _nullable, rng, literals = _split(hint)
    if literals is not None:
        return {"choices": list(literals)}
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base) or (str,)
        return {"action": "append", "type": _converter(item, None)}
    if base in (dict, list) or typing.get_origin(base) is dict:
        # no one flag form fits a mapping (KEY=VALUE? NAME.KEY=VALUE?): the command says
        raise TypeError(f"{flag}: a dict field needs its flag in the command's exception table")
    return {"type": _converter(base, rng)}


def _converter(base: Any, rng: Any) -> Callable[[str], Any]:
    """str -> value of type ``base`` within ``rng``, or ``argparse.ArgumentTypeError``."""
    if base is int:
        def conv(s: str) -> int:
            positive = rng is not None and rng.lo == 1 and not rng.lo_open and rng.hi is None
            what = "a positive integer" if positive else "an integer" + (
                f" {rng.describe()}" if rng is not None else "")
            try:
                v = int(s)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
            if rng is not None and not rng.contains(v):
                raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
            return v
    elif base is float:
        def conv(s: str) -> float:
            import math

            try:
                v = float(s)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
            if not math.isfinite(v) or (rng is not None and not rng.contains(v)):
                raise argparse.ArgumentTypeError(
                    f"expected a finite number{' ' + rng.describe() if rng else ''}, got {s!r}")
            return v
    else:
        def conv(s: str) -> str:
            return s
    conv.__name__ = getattr(base, "__name__", "value")  # argparse names the type in errors
    return conv


def given_flags(args: argparse.Namespace, flags: Dict[str, str]) -> Dict[str, Any]:
    """{field name: value} of the flags given on the command line (the others are absent)."""
    return {name: getattr(args, name) for name in flags if hasattr(args, name)}

"""Typed options of explainers and metrics.

Each option declares its type and range next to its default, as a type hint:

* explainers, in the signature of ``__init__`` (decorated with :func:`typed_options`)::

      @typed_options
      def __init__(self, N: Optional[Annotated[int, Range(1)]] = None,
                   p: Annotated[float, Range(0, 1, lo_open=True)] = 0.5): ...

* metrics, in ``option_types`` beside ``defaults`` (checked by ``Metric.__init__``).

The hints understood: ``int``, ``float``, ``bool``, ``str``, ``dict``, ``list``, ``Any``,
``Optional[X]`` (None = "automatic"), ``Literal[...]`` (one of the values) and
``Annotated[X, Range(...)]``; other hints are not checked (generic containers only as
containers; a tuple arrives from JSON as a list). The check is strict where a JSON value from the command line
could slip through: ``true`` is not a count (Python's ``bool`` is an ``int``), ``2000.0``
is not an integer, NaN and infinities are not numbers here; an ``int`` given for a
``float`` becomes that float. A bad value is a one-line :class:`UserError` raised when the
explainer or metric is built, which the runner does before it writes anything.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

from .errors import UserError


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``lo <= v <= hi`` (``<`` where open); None = unbounded. ``hi``
    may be a function of no arguments, asked each time (a bound of the machine a command
    runs on, e.g. its core count)."""

    lo: Optional[float] = None
    hi: Optional[float | Callable[[], float]] = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def upper(self) -> Optional[float]:
        return self.hi() if callable(self.hi) else self.hi

    def contains(self, v: float) -> bool:
        hi = self.upper
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if hi is not None and (v >= hi if self.hi_open else v > hi):
            return False
        return True

    def describe(self) -> str:
        hi = self.upper
        if self.lo is not None and hi is not None:
            return (f"in {'(' if self.lo_open else '['}{_num(self.lo)}, "
                    f"{_num(hi)}{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(hi)}"
        return ""


# Image sizes every model and dataset here takes: 16 px (below it shapes' objects are a few
# pixels and a ResNet's last feature map is 1x1 or less) to 1024 px (4.6x ImageNet's 224;
# one 1024 px RGB float32 image is 12 MiB, a batch of 64 with ResNet-50's activations
# tens of GiB - past that a run exhausts memory instead of saying so).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024
IMAGE_SIZE = Range(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json(v: Any) -> str:
    """A value as the user typed it on the command line (JSON), for messages."""
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _split(hint):
    """``hint`` -> (base type, nullable, Range or None, literal values or None)."""
    nullable, rng, literals = False, None, None
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return Any, nullable, None, None  # a union of several types: not checked here
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(hint)
        rng = next((m for m in meta if isinstance(m, Range)), None)
        hint = base
        origin = typing.get_origin(hint)
    if origin is typing.Literal:
        literals = typing.get_args(hint)
        hint = None
    return hint, nullable, rng, literals


def describe(hint) -> str:
    """What a value of option type ``hint`` must be, in words ("an integer >= 1 or null")."""
    base, nullable, rng, literals = _split(hint)
    if literals is not None:
        text = "one of " + ", ".join(_json(v) for v in literals)
    else:
        base = typing.get_origin(base) or base
        text = {int: "an integer", float: "a finite number", bool: "true or false",
                str: "a string", dict: "a JSON object", list: "a list",
                tuple: "a list"}.get(base, "any JSON value")
        if rng is not None:
            text += " " + rng.describe()
    return text + (" or null (automatic)" if nullable else "")


def check_value(hint, value: Any, label: str) -> Any:
    """``value`` checked against option type ``hint``; returned as the type says (an int
    given for a float becomes a float). ``label`` names the option in the one-line
    :class:`UserError` raised otherwise (e.g. "method option rise.N")."""
    base, nullable, rng, literals = _split(hint)
    if value is None and (nullable or base is Any):
        return None
    ok, out = _matches(base, literals, value)
    if ok and rng is not None and not rng.contains(out):
        ok = False
    if not ok:
        wide = base is int and type(value) is int and not _INT64[0] <= value <= _INT64[1]
        raise UserError(f"{label} must be {describe(hint)}"
                        + (" that fits in 64 bits" if wide else "") + f", got {_json(value)}.")
    return out


# What torch and numpy take as an integer: a larger Python int was an OverflowError traceback
# (``rise.N=99999999999999999999999``).
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def _matches(base, literals, v):
    if literals is not None:
        # type() too: True == 1 and 1 == 1.0, but neither is the other's option value
        return any(type(v) is type(a) and v == a for a in literals), v
    if base is Any:
        return True, v
    if base is bool:
        return type(v) is bool, v
    if base is int:
        return type(v) is int and _INT64[0] <= v <= _INT64[1], v
    if base is float:
        ok = type(v) in (int, float) and math.isfinite(v)
        return ok, float(v) if ok else v
    if base is str:
        return isinstance(v, str), v
    if base in (dict, list):
        return isinstance(v, base), v
    origin = typing.get_origin(base)
    if origin in (dict, list, tuple):  # Dict[...], List[...], Tuple[...]: the container only
        return isinstance(v, list if origin is tuple else origin), v
    return True, v  # any other hint is not checked here


def unknown_option_message(owner: str, key: str, known: Iterable[str]) -> str:
    """"<owner> has no option 'x'; did you mean 'y'? its options are: ..." (one line)."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return (f"{owner} has no option {key!r}{hint} its options are: "
            f"{', '.join(known) or '(none)'}.")


def option_hints(func: Callable) -> Dict[str, Any]:
    """The type hints of ``func``'s keyword options (``self`` and ``**kwargs`` left out)."""
    func = inspect.unwrap(func)
    hints = typing.get_type_hints(func, include_extras=True)
    params = inspect.signature(func).parameters
    return {n: hints[n] for n, p in params.items()
            if n in hints and n != "self"
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def typed_options(init: Callable) -> Callable:
    """Decorate an explainer's ``__init__``: every option is checked against its type hint
    (see the module docstring) before the body runs, and an unknown one is refused with
    the closest known name. ``self.name`` names the explainer in the messages."""
    sig = inspect.signature(init)
    params = [p for n, p in sig.parameters.items() if n != "self"]
    takes_more = any(p.kind is p.VAR_KEYWORD for p in params)
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    cache: list = []  # the hints, resolved at the first call (the module is loaded by then)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if not cache:
            cache.append(option_hints(init))
        hints = cache[0]
        owner = f"method {getattr(self, 'name', '') or type(self).__name__!r}"
        if not takes_more:
            for key in kwargs:
                if key not in names:
                    raise UserError(unknown_option_message(owner, key, names))
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as e:
            raise UserError(f"bad options for {owner}: {e}.") from None
        for key in list(bound.arguments):
            if key in hints and key in names:
                bound.arguments[key] = check_value(hints[key], bound.arguments[key],
                                                   f"option {key} of {owner}")
        return init(*bound.args, **bound.kwargs)

    return wrapper

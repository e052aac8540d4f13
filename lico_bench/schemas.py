"""Typed schemas of the files lico-bench reads back: one per boundary, checked in one place.

A file from outside (a checkpoint, ``last.pt``, ``manifest.json``, ``inputs.pt``, a maps
file, a rows file) is data of a known shape; :meth:`Schema.check` says in one line which
field is wrong and how, so that a forged or damaged file ends in a :class:`UserError`
(exit 2) instead of a traceback further on (``cfg: "x"``, ``epoch: "one"``, a maps file
holding a bare tensor, a rows value that is a string under a valid checksum).

Each reader calls its schema right after loading: ``models.read_checkpoint`` (CHECKPOINT),
``train.state.read_state`` (TRAIN_STATE), ``bench.manifest`` (MANIFEST, SPEC),
``report.figure_files`` (MAPS_FILE, INPUTS_FILE) and ``results`` (ROW, ROWS_CHECK). A type is a
:class:`T`: a description and a test; :func:`list_of`, :func:`mapping_of`,
:func:`nullable` and :func:`tensor` build the others.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional

from .errors import UserError


@dataclass(frozen=True)
class T:
    """A field type: ``desc`` (what a value must be, in words) and ``ok(value)``; ``items``
    (for containers) checks each element and names the first bad one."""

    desc: str
    ok: Callable[[Any], bool]
    items: Optional["T"] = None

    def problem(self, value: Any, label: str) -> Optional[str]:
        """Why ``value`` (called ``label``) is not of this type, or None."""
        if not self.ok(value):
            return f"{label} must be {self.desc}, got {_shown(value)}"
        if self.items is not None and value is not None:
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in pairs:
                why = self.items.problem(v, f"{label}[{k!r}]")
                if why:
                    return why
        return None


def _shown(value: Any) -> str:
    """A short, one-line picture of a bad value: its type, and the value if it is small."""
    kind = type(value).__name__
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else f"a {kind} ({text[:37]}...)"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {kind} of shape {list(shape)}"
    return f"a {kind}"


def integer(lo: Optional[int] = None, hi: Optional[int] = None) -> T:
    """An int (not a bool) in [lo, hi]."""
    desc = "an integer" + (f" >= {lo}" if lo is not None else "") + \
        (f" <= {hi}" if hi is not None else "")
    return T(desc, lambda v: type(v) is int and (lo is None or v >= lo) and (hi is None or v <= hi))


NUMBER = T("a number", lambda v: type(v) in (int, float))           # NaN included (a flagged map)
FINITE = T("a finite number", lambda v: type(v) in (int, float) and math.isfinite(v))
TEXT = T("a string", lambda v: isinstance(v, str))
FLAG = T("true or false", lambda v: type(v) is bool)
MAPPING = T("a mapping", lambda v: isinstance(v, dict))
ANY = T("anything", lambda v: True)


def nullable(t: T) -> T:
    return T(f"{t.desc} or null", lambda v: v is None or t.ok(v), t.items)


def list_of(t: T, min_len: int = 0) -> T:
    return T(f"a list of {_plural(t.desc)}" + (" (not empty)" if min_len else ""),
             lambda v: isinstance(v, (list, tuple)) and len(v) >= min_len, t)


def mapping_of(t: T) -> T:
    """A dict with string keys and values of type ``t``."""
    return T(f"a mapping of names to {_plural(t.desc)}",
             lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), t)


def _plural(desc: str) -> str:
    for a in ("an ", "a "):
        if desc.startswith(a):
            return desc[len(a):].replace("integer", "integers", 1).replace("number", "numbers", 1) \
                .replace("string", "strings", 1).replace("tensor", "tensors", 1) \
                .replace("mapping", "mappings", 1)
    return desc


def tensor(ndim: Optional[int] = None, kind: Optional[str] = None) -> T:
    """A torch.Tensor with ``ndim`` dimensions whose dtype is of ``kind`` ("float",
    "int" or "bool"; None: any)."""
    def ok(v):
        import torch

        if not isinstance(v, torch.Tensor) or (ndim is not None and v.dim() != ndim):
            return False
        return kind is None or {"float": v.is_floating_point(), "bool": v.dtype == torch.bool,
                                "int": not v.is_floating_point() and not v.is_complex()
                                and v.dtype != torch.bool}[kind]
    return T(f"a {kind + ' ' if kind else ''}tensor" + (f" of {ndim} dimensions" if ndim is not None
                                                        else ""), ok)


@dataclass(frozen=True)
class Schema:
    """The fields of one kind of file (a dict). ``fields``: name -> type; ``optional``:
    the names that may be absent (written by an older lico-bench); ``rest``: the type of
    any other key (None: other keys are allowed and not checked); ``consistent``: a check
    across fields (e.g. equal lengths), returning why they disagree or None."""

    kind: str
    fields: Dict[str, T]
    optional: Iterable[str] = ()
    rest: Optional[Callable[[str], T]] = None
    consistent: Optional[Callable[[dict], Optional[str]]] = field(default=None)

    def problem(self, obj: Any) -> Optional[str]:
        """Why ``obj`` is not a valid file of this kind, or None."""
        if not isinstance(obj, dict):
            return f"it holds {_shown(obj)}, not the mapping of a lico-bench {self.kind}"
        for name, t in self.fields.items():
            if name not in obj:
                if name in self.optional:
                    continue
                return f"it has no {name!r}"
            why = t.problem(obj[name], repr(name))
            if why:
                return why
        if self.rest is not None:
            for name, value in obj.items():
                if name not in self.fields:
                    why = self.rest(name).problem(value, repr(name))
                    if why:
                        return why
        return self.consistent(obj) if self.consistent is not None else None

    def check(self, obj: Any, what: str, fix: str) -> dict:
        """``obj`` if valid; else a one-line UserError ``"<what> is not a lico-bench <kind>
        (<why>); <fix>."``."""
        why = self.problem(obj)
        if why:
            raise UserError(f"{what} is not a lico-bench {self.kind} ({why}); {fix}.")
        return obj


def same_length(*names: str) -> Callable[[dict], Optional[str]]:
    """A ``consistent`` check: the fields ``names`` (lists or tensors, absent or None
    skipped) hold as many entries each."""
    def check(obj: dict) -> Optional[str]:
        lens = {n: len(obj[n]) for n in names if obj.get(n) is not None}
        if len(set(lens.values())) > 1:
            return "its fields hold different numbers of images (" + ", ".join(
                f"{n}: {k}" for n, k in lens.items()) + ")"
        return None
    return check


# ---------------------------------------------------------------------------- the schemas
STATE_DICT = mapping_of(tensor())

#: models.save_checkpoint: {format, cfg, state_dict, extra}; cfg is then typed by ModelCfg
CHECKPOINT = Schema("checkpoint", {"format": integer(1), "cfg": MAPPING,
                                   "state_dict": STATE_DICT, "extra": nullable(MAPPING)},
                    optional=("format", "extra"))

#: train.state.training_state (last.pt)
TRAIN_STATE = Schema("training state", {
    "format": integer(1), "train_cfg": MAPPING, "epoch": integer(0), "model": STATE_DICT,
    "optimizer": MAPPING, "scheduler": MAPPING, "ema": nullable(STATE_DICT),
    "ema_updates": integer(0), "head": nullable(MAPPING), "history": list_of(MAPPING)},
    consistent=lambda s: None if len(s["history"]) == s["epoch"] else
    f"its log holds {len(s['history'])} epochs, but it says {s['epoch']} were trained")

#: report.figure_files / bench.figure_inputs: maps/<experiment>.pt
MAPS_FILE = Schema("maps file", {
    "image_ids": list_of(integer(0)), "maps": tensor(3, "float"), "targets": list_of(integer(0)),
    "points": tensor(2, "int"), "metric_maps": mapping_of(tensor(4, "float"))},
    optional=("points", "metric_maps"), consistent=same_length("image_ids", "maps", "targets",
                                                               "points"))

#: bench.runner / bench.agreement: a batch's or an experiment's pooled maps [n, h, w]
POOLED_MAPS = tensor(3, "float")

#: bench.figure_inputs: inputs.pt
INPUTS_FILE = Schema("inputs file", {
    "image_ids": list_of(integer(0)), "images": tensor(4, "float"),
    "masks": nullable(tensor(3, "bool")), "labels": list_of(TEXT)},
    consistent=same_length("image_ids", "images", "masks", "labels"))

#: bench.manifest.read_manifest: the fields report and figures read (each may be absent in
#: an older manifest; read_manifest says which a purpose needs)
_MANIFEST_FIELDS = {"format": integer(1), "spec": MAPPING, "metrics": mapping_of(MAPPING),
                    "models": mapping_of(MAPPING), "methods": mapping_of(MAPPING),
                    "methods_resolved": MAPPING, "checkpoints": mapping_of(TEXT),
                    "dataset": MAPPING, "versions": MAPPING, "row_checks": FLAG,
                    "trained": mapping_of(MAPPING)}
MANIFEST = Schema("manifest", _MANIFEST_FIELDS, optional=tuple(_MANIFEST_FIELDS))

#: bench.manifest: the part of a manifest's spec that says what was run
SPEC = Schema("manifest spec", {
    "dataset": TEXT, "models": list_of(TEXT, 1), "methods": list_of(TEXT, 1),
    "seeds": list_of(integer(), 1), "n_images": integer(1)}, optional=("n_images",))

#: results: rows/<experiment>.check.json
SHA256 = T("64 hexadecimal digits", lambda v: isinstance(v, str) and len(v) == 64
           and all(c in "0123456789abcdef" for c in v))
ROWS_CHECK = Schema("check file", {"format": integer(1), "rows": integer(0), "sha256": SHA256})

_ROW_TEXT = ("dataset", "model", "method", "map_status", "evidence")
_ROW_INT = ("seed", "label", "pred", "target", "cue_label", "grid_composite", "grid_cell",
            "grid_source_id")


def _row_rest(name: str) -> T:
    """Any other column of a row: a metric's value (a number; null where it does not
    apply) or a curve / list of ids (a list of numbers)."""
    return nullable(list_of(NUMBER)) if name.startswith("curve_") or name.endswith("_ids") \
        else nullable(NUMBER)


#: results: one line of rows/<experiment>.jsonl (image ids are checked by results itself)
ROW = Schema("row", {**{k: TEXT for k in _ROW_TEXT}, **{k: integer() for k in _ROW_INT},
                     "image_id": ANY}, optional=_ROW_TEXT + _ROW_INT + ("image_id",),
             rest=_row_rest)

"""Typed configuration: dataclasses built from plain dicts, unknown keys an error."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Type, TypeVar

from .errors import UserError

T = TypeVar("T")


def strict_from_dict(cls: Type[T], d: Dict[str, Any], what: str) -> T:
    """``cls(**d)`` for a dataclass ``cls``; an unknown key is a one-line :class:`UserError`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return cls(**d)

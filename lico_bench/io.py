"""Atomic file writes: a half-written file never replaces a good one.

A write that fails (disk full, no permission) raises an ``OSError`` whose ``filename`` is
the file that was being written - the write syscalls themselves name no file - so that the
CLI's one-line error can say which one; the previous version of that file is left as it was.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _named(e, path) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would (other ranks,
        # nodes and users read checkpoints and results on a shared filesystem)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as e:
        raise _named(e, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _named(e: OSError, path: Path) -> OSError:
    """``e`` with ``filename`` set to ``path`` where the failing call named no file (a
    ``write`` or ``fsync`` on a full disk) or named our temporary file."""
    if e.filename is None or Path(str(e.filename)).name.startswith(f".{path.name}."):
        e.filename = str(path)
    return e


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` (tensors and plain containers only, see :func:`to_plain`) atomically, so
    that it loads back with ``torch.load(weights_only=True)``."""
    import torch

    obj = to_plain(obj)
    with atomic_path(path) as tmp:
        # Through a Python file, whose write raises the OSError (ENOSPC) a full disk is;
        # torch's zip writer then fails while closing ("unexpected pos") and its
        # RuntimeError would hide that OSError, so the OSError is raised instead.
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except RuntimeError as e:
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise
    return Path(path)


def to_plain(obj: Any) -> Any:
    """``obj`` as tensors and plain containers, what ``torch.load(weights_only=True)`` reads
    back without running any code: dicts (and OrderedDicts), lists, tuples, str, bytes,
    int, float, bool, None and tensors. A path becomes its string, a numpy scalar its
    Python value; anything else is a TypeError (a lico-bench bug: it would make a file that
    only an unsafe load could read)."""
    import collections

    import torch

    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor)):
        return obj
    if isinstance(obj, dict):
        kind = collections.OrderedDict if isinstance(obj, collections.OrderedDict) else dict
        return kind((to_plain(k), to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():   # numpy scalar
        return obj.item()
    raise TypeError(f"cannot save a {type(obj).__name__} in a lico-bench file: only tensors "
                    "and plain containers load back safely (weights_only=True).")


def safe_torch_load(path: str | os.PathLike, what: str, fix: str, kind: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, so a file
    someone hands us cannot run code while it is read (a pickled object's ``__reduce__``).
    A file holding anything else is refused unread with a one-line :class:`UserError`; a
    truncated or garbled one likewise. ``what`` names the file in the message (e.g.
    "checkpoint 'x.pt'"), ``fix`` says what to do about a corrupt one, ``kind`` is what a
    good file is ("checkpoint", "maps file")."""
    import torch

    from .errors import UserError

    # Opened here, so that an unreadable file (permission, a folder) is an OSError naming
    # it, while anything that goes wrong inside the load means a damaged or unsafe file.
    with open(path, "rb") as f:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # refused pickle, truncated zip, garbage bytes, ...
            refused = isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower()
            name = type(e).__name__
    if refused:
        raise UserError(f"{what} is not a lico-bench {kind}, or an unsafe one: it holds objects "
                        "other than tensors and plain containers, which could run code when "
                        "loaded, so it was not loaded; use one written by lico-bench.")
    raise UserError(f"{what} is corrupt or not a lico-bench {kind} ({name}); {fix}.")

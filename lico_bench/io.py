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

    # A regular file (a FIFO would block the open, /dev/zero never end: one line instead);
    # opened here, so that an unreadable file (permission, a folder) is an OSError naming
    # it, while anything that goes wrong inside the load means a damaged or unsafe file.
    check_regular_file(path, what, MAX_TORCH_BYTES, f"it is not a {kind} lico-bench wrote")
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


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip whose one top
    folder holds ``data.pkl`` and the module's source under ``code/``). Reads the zip's
    directory only."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.count("/") >= 2 and n.split("/")[1] == "code" for n in names) and \
        any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names)


class _ScriptObject:
    """Stands in for a ``__torch__.*`` class of a TorchScript archive: it only records the
    state the archive stores (BUILD), so no code of the archive (its ``__setstate__`` or
    any method under ``code/``) ever runs."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        self.state = state


def torchscript_tensors(path: str | os.PathLike, what: str, fix: str) -> "dict":
    """The parameters and buffers of a TorchScript archive as ``{dotted.name: tensor}``
    (what ``torch.jit.load(path).state_dict()`` gives for a module without custom
    ``__setstate__``), read WITHOUT executing the archive.

    ``torch.jit.load`` compiles and runs the archive's code (``code/*.py``, including a
    module's ``__setstate__``, which runs while loading), so a file someone hands us could
    run code. Here ``data.pkl`` is read by a restricted unpickler that admits only tensor
    rebuilding (``torch._utils._rebuild_tensor_v2`` over the archive's ``data/N`` storages),
    ``collections.OrderedDict`` and TorchScript's list tags; every ``__torch__.*`` class
    becomes an inert :class:`_ScriptObject` holding its attribute dict. A module whose state
    is not an attribute dict (a custom ``__setstate__``: only its code knows the names) is
    refused. UserError (one line, naming ``what``; ``fix`` says what to do) on anything else.
    """
    import collections
    import zipfile

    import torch

    from .errors import UserError

    def _list(*a):
        return list(a[0]) if len(a) == 1 else list(a)

    allowed = {("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
               ("collections", "OrderedDict"): collections.OrderedDict,
               ("torch.jit._pickle", "restore_type_tag"): lambda value, _tag: value,
               **{("torch.jit._pickle", f"build_{k}list"): _list
                  for k in ("int", "double", "bool", "tensor")}}

    class _Unpickler(pickle.Unpickler):
        def __init__(self, f, zf: zipfile.ZipFile, prefix: str):
            super().__init__(f)
            self.zf, self.prefix = zf, prefix

        def find_class(self, module: str, name: str):
            if module == "__torch__" or module.startswith("__torch__."):
                return _ScriptObject
            if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
                return ("storage", name)
            if (module, name) in allowed:
                return allowed[(module, name)]
            raise pickle.UnpicklingError(f"refused global {module}.{name}")

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], tuple) and pid[1][:1] == ("storage",)):
                raise pickle.UnpicklingError("unexpected persistent id")
            dtype = torch.storage._get_dtype_from_pickle_storage_type(pid[1][1])
            raw = self.zf.read(f"{self.prefix}/data/{pid[2]}")
            untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else \
                torch.UntypedStorage(0)
            return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)

    try:
        with zipfile.ZipFile(path) as zf:
            prefix = next(n[: -len("/data.pkl")] for n in zf.namelist()
                          if n.endswith("/data.pkl") and n.count("/") == 1)
            with zf.open(f"{prefix}/data.pkl") as f:
                root = _Unpickler(f, zf, prefix).load()
    except Exception as e:   # refused global, damaged zip or pickle, missing storage ...
        raise UserError(f"{what} is a damaged or unsupported TorchScript archive "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:100]}); {fix}") from None
    out: dict = {}
    todo = [("", root)]          # iterative walk: a deeply nested forged archive cannot recurse
    while todo:
        name, obj = todo.pop()
        state = getattr(obj, "state", None)
        if not isinstance(state, dict):
            raise UserError(f"{what}: module {name or '(top)'!r} stores its state through its "
                            f"own code (__setstate__), which lico-bench does not run; {fix}")
        for k, v in state.items():
            key = f"{name}{k}"
            if isinstance(v, torch.Tensor):
                out[key] = v
            elif isinstance(v, _ScriptObject):
                todo.append((key + ".", v))
    return out


# Bounds of the small files a user can hand over (configs, manifests) and of a rows file.
MAX_CONFIG_BYTES = 16 * 2 ** 20        # a manifest of a large grid is ~100 KB
MAX_ROWS_BYTES = 4 * 2 ** 30           # ~50 000 images x every metric with curves: ~0.5 GB
MAX_TORCH_BYTES = 64 * 2 ** 30         # a checkpoint, state or maps file (ResNet-50 + EMA: ~0.3 GB)
MAX_NESTING = 32                       # configs and manifests nest 4 deep
MAX_NODES = 1_000_000                  # values in one config or manifest (YAML aliases too)


def check_regular_file(path: str | os.PathLike, what: str, limit: int,
                       too_big: str = "it is not a file lico-bench wrote") -> int:
    """The size of ``path`` after checking, without reading it, that it is a regular file
    (a FIFO would block, /dev/zero never end: the symlink is followed) of at most ``limit``
    bytes; a one-line UserError naming ``what`` otherwise (``too_big``: what to say about a
    file over the limit). Opened ``O_NONBLOCK`` and then ``fstat``-ed, so a FIFO is not
    waited on. An unopenable path raises the OSError (naming it)."""
    import stat

    from .errors import UserError

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} is not a regular file (a FIFO, device or socket, e.g. a "
                        f"symlink to /dev/zero); replace it with the file itself.")
    if st.st_size > limit:
        raise UserError(f"{what} is {st.st_size} bytes, over the limit of {limit} bytes; "
                        f"{too_big}.")
    return st.st_size


def read_bounded_text(path: str | os.PathLike, what: str, limit: int = MAX_CONFIG_BYTES) -> str:
    """The text of a small file from outside (config, manifest): :func:`check_regular_file`
    first, then at most ``limit`` bytes read (a file growing meanwhile is cut there and
    fails to parse). UTF-8; a decoding error is a ValueError, as ``Path.read_text``'s."""
    check_regular_file(path, what, limit)
    with open(path, "rb") as f:
        return f.read(limit + 1).decode("utf-8")


def check_nesting(obj: Any, what: str, depth: int = MAX_NESTING, nodes: int = MAX_NODES) -> Any:
    """``obj`` (parsed JSON/YAML/TOML), after checking that it nests at most ``depth``
    levels and holds at most ``nodes`` values (YAML aliases can make a small file a huge
    tree); iterative, so no RecursionError. A one-line UserError naming ``what`` otherwise."""
    from .errors import UserError

    todo, seen = [(obj, 1)], 0
    while todo:
        value, level = todo.pop()
        seen += 1
        if seen > nodes:
            raise UserError(f"{what} holds more than {nodes} values; it is not a lico-bench "
                            f"config or manifest.")
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if level > depth:
            raise UserError(f"{what} nests deeper than {depth} levels; lico-bench configs and "
                            f"manifests nest 4.")
        todo.extend((c, level + 1) for c in children)
    return obj

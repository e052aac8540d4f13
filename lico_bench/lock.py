"""One writer per directory: an exclusive ``fcntl.flock`` on ``<directory>/.lock``.

``lico-bench run`` holds the lock of its results directory (``--out``) and ``train`` that of
the run directory it trains into, from before they read what is there until they return.
A second command on the same directory does not wait: it stops at once with one line
saying that another lico-bench holds it (with its pid where the system tells), before it
has read or written anything there - so no half-merged experiment, no orphan part file,
no traceback.

The lock belongs to the open file, so the kernel releases it whenever the process ends,
SIGKILL included: a lock file left behind by a killed run never blocks the next one. The
file itself stays (removing it would let two runs lock two different files).

Under ``torchrun`` only rank 0 takes the lock (the ranks of one job write disjoint files
and rank 0 merges), and every rank stops with the same error when it cannot.

Usage: decorate the function that writes with :func:`releases_locks`, and call
:func:`hold_lock` inside it once the directory exists; the lock is released when that
function returns or raises (Ctrl-C and SIGTERM included).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import functools
import os
from pathlib import Path
from typing import Iterator, Optional

from .errors import UserError

LOCK_NAME = ".lock"

_STACKS: contextvars.ContextVar[tuple] = contextvars.ContextVar("lico_bench_locks", default=())


def releases_locks(fn):
    """Locks taken with :func:`hold_lock` while ``fn`` runs are released when it ends."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _STACKS.set(_STACKS.get() + (stack,))
            try:
                return fn(*args, **kwargs)
            finally:
                _STACKS.reset(token)

    return wrapper


def hold_lock(directory: str | os.PathLike, what: str, fix: str) -> None:
    """Take ``directory``'s lock until the innermost :func:`releases_locks` function ends.

    ``what`` says what the holder does there ("writing results to", "training into"),
    ``fix`` what the user can do instead; both go into the one-line :class:`UserError`
    raised (on every rank) when another process holds the lock."""
    from . import distributed as dist_

    stacks = _STACKS.get()
    if not stacks:
        raise RuntimeError("hold_lock() outside a @releases_locks function would never release")
    err: Optional[str] = None
    if dist_.info().is_main:
        try:
            stacks[-1].enter_context(_exclusive(Path(directory), what, fix))
        except UserError as e:
            err = str(e)
    err = dist_.broadcast_object(err)
    if err is not None:
        raise UserError(err)


@contextlib.contextmanager
def _exclusive(directory: Path, what: str, fix: str) -> Iterator[None]:
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(path)
            raise UserError(f"another lico-bench{f' (pid {pid})' if pid else ''} is {what} "
                            f"{directory} (it holds {path}); wait for it to finish, or {fix}.") from None
        except OSError as e:
            # A filesystem without locks (some network mounts): run unlocked, as before.
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _holder(path: Path) -> Optional[int]:
    """The pid holding a flock on ``path``, from /proc/locks (Linux); None if unknown."""
    try:
        st = os.stat(path)
        ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2e:5678 0 EOF"; "->" marks waiters
                if "FLOCK" in fields and "->" not in fields and ident in fields:
                    return int(fields[fields.index(ident) - 1])
    except (OSError, ValueError, IndexError):
        pass
    return None

"""Per-image rows of a results directory: written with a check, verified before trusted.

::

    rows/<experiment>.jsonl        one JSON object per line and image; image_id 0..n-1
    rows/<experiment>.check.json   {"format": 1, "rows": n, "sha256": <of the .jsonl bytes>}

The check is written (atomically) just *before* its rows file, which is written atomically
too; so a rows file is complete exactly when it is there, and a check without its rows file
(a run killed between the two writes) only means the experiment is not finished. A rows
file is damaged when its bytes do not match its check (cut at a line boundary, a line
duplicated or edited), when a line is not a JSON object (cut mid-line, garbled), or when
its image ids are not each of 0..n-1 exactly once, n being the run's ``n_images``.

Results written before checks existed (no ``.check.json``) are read as "unverified": their
lines, ids and count are still checked. Where the manifest says every rows file has its
check (bench.manifest.rows_need_checks), a missing check is damage (``require_check``).
Used by the runner (which recomputes a damaged
experiment, keeping the rest) and by ``report``/``figures`` (a one-line error naming the
file). It sits below both, as :mod:`lico_bench.io` does.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from .errors import UserError
from .io import read_bounded_text, write_json, write_text
from .schemas import ROW, ROWS_CHECK

CHECK_FORMAT = 1
#: what to do about a damaged rows file found by report/figures
REPAIR = ("run the same 'lico-bench run' command again (or 'lico-bench run --from-manifest "
          "RESULTS_DIR/manifest.json --out RESULTS_DIR'): it recomputes just that experiment "
          "and keeps the rest")


class DamagedRows(UserError):
    """A rows file that fails its check; ``path`` is the file."""

    def __init__(self, path: Path, why: str, fix: str):
        self.path, self.why = Path(path), why
        super().__init__(f"rows file {path} is damaged: {why}; {fix}")


def check_path(rows_path: str | Path) -> Path:
    """``rows/<experiment>.jsonl`` -> ``rows/<experiment>.check.json``."""
    p = Path(rows_path)
    return p.with_name(p.name[: -len(".jsonl")] + ".check.json")


def _ids_problem(ids: List, n: Optional[int]) -> Optional[str]:
    """Why image ids ``ids`` are not 0..n-1 each exactly once (None if they are)."""
    if any(type(i) is not int for i in ids):
        return "a row has no integer image_id"
    n = len(ids) if n is None else n
    seen = set()
    for i in ids:
        if i in seen:
            return f"image {i} appears {ids.count(i)} times"
        seen.add(i)
    outside = [i for i in ids if not 0 <= i < n]
    if outside:
        return f"image {outside[0]} is not one of the run's images 0..{n - 1}"
    if len(ids) != n:  # no duplicate, none outside: some are missing
        return f"it holds {len(ids)} rows for the run's {n} images"
    return None


def parse_rows(data: bytes, n: Optional[int] = None) -> Tuple[List[dict], Optional[str]]:
    """Rows of a rows file's bytes, and why they are damaged (None if they are not):
    every line a JSON object ending in a newline, its columns typed (:data:`schemas.ROW`),
    image ids each of 0..n-1 exactly once
    (``n`` None: as many as there are rows)."""
    if not data:
        return [], "it is empty"
    if not data.endswith(b"\n"):
        return [], "its last line is cut short"
    rows = []
    for k, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            r = json.loads(line)
        except ValueError:
            return [], f"line {k} is not valid JSON"
        if not isinstance(r, dict):
            return [], f"line {k} is not a row (a JSON object)"
        why = ROW.problem(r)     # typed columns: a metric's value is a number, never text
        if why:
            return [], f"line {k}: {why}"
        rows.append(r)
    why = _ids_problem([r.get("image_id") for r in rows], n)
    return rows, why


def write_rows(path: str | Path, text: str, n: int) -> Path:
    """Write rows ``text`` (one JSON row per line, image ids 0..n-1) to ``path`` with its
    check, both atomically, the check first. Rows that fail the check are never written
    (a bug, raised as RuntimeError)."""
    data = text.encode()
    _, why = parse_rows(data, n)
    if why is not None:
        raise RuntimeError(f"refusing to write rows that fail their own check ({why}): {path}")
    write_json(check_path(path), {"format": CHECK_FORMAT, "rows": data.count(b"\n"),
                                  "sha256": hashlib.sha256(data).hexdigest()})
    return write_text(path, text)


def read_rows(path: str | Path, n: Optional[int], fix: str,
              require_check: bool = False) -> Tuple[List[dict], bool]:
    """Verified rows of rows file ``path`` and whether a checksum vouched for them.

    ``n``: the run's image count (None: unknown, ids checked against the row count).
    With a check file the bytes must match its sha256 and row count; without one (older
    results) only the lines, ids and count are checked, unless ``require_check`` (the
    manifest says every rows file has a check): then a missing check file is damage, so
    that deleting it cannot switch verification off. The lines and ids are checked in
    both cases: a check vouches only that the bytes are unchanged since it was written,
    not that they are the run's n rows. Raises :class:`DamagedRows` (its message ends
    with ``fix``)."""
    path = Path(path)
    data = path.read_bytes()
    check = check_path(path)
    verified = check.exists()
    if require_check and not verified:
        raise DamagedRows(path, f"its check file {check.name} is missing (this lico-bench "
                          "writes one with every rows file)", fix)
    if verified:
        try:   # bounded (a FIFO or /dev/zero is refused, not read), typed (ROWS_CHECK)
            c = json.loads(read_bounded_text(check, f"check file {check}", 2 ** 16))
            why = ROWS_CHECK.problem(c)
        except (ValueError, RecursionError, UserError):
            why = "it is not JSON of at most 64 KiB"
        if why:
            raise DamagedRows(path, f"its check file {check.name} is not readable ({why})",
                              fix) from None
        rows_n, sha = c["rows"], c["sha256"]
        if hashlib.sha256(data).hexdigest() != sha or data.count(b"\n") != rows_n:
            _, why = parse_rows(data, n if n is not None else rows_n)  # say what changed
            raise DamagedRows(path, f"{why or 'a row was changed'} (its bytes no longer "
                              f"match the checksum in {check.name})", fix)
        if n is not None and rows_n != n:
            raise DamagedRows(path, f"it holds {rows_n} rows for the run's {n} images", fix)
    rows, why = parse_rows(data, n)
    if why is not None:
        raise DamagedRows(path, why, fix)
    return rows, verified


def part_is_whole(path: Path, ids: List[int]) -> bool:
    """Whether part file ``path`` (rows of one batch, written atomically by the runner)
    holds exactly the rows of images ``ids``, in order. A part that does not (edited,
    damaged on disk) is computed again instead of being merged."""
    try:
        rows, _ = parse_rows(Path(path).read_bytes(), None)
    except OSError:
        return False
    return [r.get("image_id") for r in rows] == list(ids)


def unverified(files: Iterable[Path]) -> List[Path]:
    """The rows files among ``files`` that have no check (written by an older lico-bench)."""
    return [f for f in files if not check_path(f).exists()]


def expected_images(results: str | Path) -> Optional[int]:
    """``n_images`` of the run recorded in ``results/manifest.json`` (None if unknown)."""
    try:
        n = json.loads((Path(results) / "manifest.json").read_text())["spec"]["n_images"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n if type(n) is int and n > 0 else None

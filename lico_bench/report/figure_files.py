"""The files of a results directory that the figures read, besides the rows and manifest.

The runner writes them (:mod:`lico_bench.bench.figure_inputs`), so the report reads
results only: no dataset, explainer, metric or checkpoint is needed to draw a figure.

::

    maps/<experiment>.pt      the first ``save_maps`` maps of an experiment:
                              image_ids [k], maps [k, H, W] float32 (raw), targets [k],
                              points [k, 2] int64 (y, x): the pointing-game point of each
                              map (its first maximum, metrics.pointing_points)
    inputs.pt                 the images those maps explain: image_ids [k],
                              images [k, H, W, 3] float32 in [0, 1] (de-normalised),
                              masks [k, H, W] bool or None, labels [k] class names
    logs/<model>@seed<s>.csv  a copy of each checkpoint's training log (log.csv)
    thumbs/meta.json          the small images of every evaluated image, for the results
    thumbs/inputs/NNNN.jpg    browser (index.html): tile size T (<= 64 px), 16 tiles a row,
    thumbs/masks/NNNN.png     256 a sheet; image i is tile i % 256 of sheet i // 256, row-major.
    thumbs/<experiment>/NNNN.png   inputs RGB (JPEG, quality 90, no chroma subsampling),
                              masks and maps 8-bit grey PNG; each map min-max scaled to
                              0..255 on its own (its shape, not its scale)
    wall_time.json            the last 'run' command's wall time in seconds (wall_s)

Results written before these files existed lack ``points``, ``inputs.pt`` or ``logs/``;
the figures then leave out what needs them, with a one-line note
(``python -m lico_bench.bench.figure_inputs RESULTS_DIR`` writes them afterwards).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..io import safe_torch_load
from ..schemas import INPUTS_FILE, MAPS_FILE

INPUTS = Path("inputs.pt")
LOGS = Path("logs")
THUMBS = Path("thumbs")
THUMB_META = THUMBS / "meta.json"
THUMBS_PER_ROW = 16
THUMBS_PER_SHEET = THUMBS_PER_ROW * 16
WALL_TIME = Path("wall_time.json")


def thumb_sheet(results: Path, folder: str, sheet: int) -> Path:
    """Sheet ``sheet`` of ``thumbs/<folder>/`` (folder: "inputs", "masks" or an experiment key)."""
    return results / THUMBS / folder / f"{sheet:04d}.{'jpg' if folder == 'inputs' else 'png'}"


def sheets_complete(results: Path, folder: str, n: int) -> bool:
    """Whether every sheet of ``n`` images of ``thumbs/<folder>/`` is there."""
    return all(thumb_sheet(results, folder, s).is_file() for s in range(-(-n // THUMBS_PER_SHEET)))


def maps_path(results: Path, dataset: str, model: str, method: str, seed: int) -> Path:
    """``maps/<experiment>.pt`` of one experiment (the experiment key of bench.spec)."""
    return results / "maps" / f"{dataset}__{model}__{method.replace(':', '-')}__seed{seed}.pt"


def log_path(results: Path, key: str) -> Path:
    """The copied training log of checkpoint ``key`` ("model@seed<s>")."""
    return results / LOGS / f"{key}.csv"


def read_maps(path: Path) -> dict:
    """One maps file (see the module docstring), loaded as data (weights_only)."""
    what, fix = f"maps file {path}", "delete it and run the same command again"
    return MAPS_FILE.check(safe_torch_load(path, what, fix, kind="maps file"), what, fix)


def read_inputs(results: Path) -> Optional[dict]:
    """``inputs.pt`` (see the module docstring), or None when the run did not save it."""
    path = results / INPUTS
    if not path.exists():
        return None
    what = f"inputs file {path}"
    fix = f"delete it and run 'python -m lico_bench.bench.figure_inputs {results}'"
    return INPUTS_FILE.check(safe_torch_load(path, what, fix, kind="inputs file"), what, fix)


def read_curves(results: Path) -> Dict[Tuple[str, str], Dict[str, list]]:
    """(model, method) -> {"insertion": [curve, ...], "deletion": [...]}, over every seed."""
    out: Dict[Tuple[str, str], Dict[str, list]] = {}
    for f in sorted((results / "rows").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            d = out.setdefault((r["model"], r["method"]), {})
            for k, v in r.items():
                if k.startswith("curve_") and v is not None:
                    d.setdefault(k[len("curve_"):], []).append(v)
    return out


def find_training_logs(results: Path, manifest: dict) -> Tuple[Dict[str, Path], List[str]]:
    """model@seed -> its training log in ``logs/`` for every checkpoint of the manifest that
    has one; and the keys without one."""
    found, missing = {}, []
    for key in sorted(manifest.get("checkpoints") or {}):
        p = log_path(results, key)
        if p.exists():
            found[key] = p
        else:
            missing.append(key)
    return found, missing


def read_log(path: Path) -> Dict[str, np.ndarray]:
    """A training log: column -> values per epoch (float; empty cells NaN; text columns left out)."""
    with open(path, newline="") as f:
        recs = list(csv.DictReader(f))
    out = {}
    for k in (recs[0].keys() if recs else []):
        try:
            out[k] = np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in recs])
        except ValueError:
            continue
    return out

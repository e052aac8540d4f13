"""The results browser: ``RESULTS_DIR/index.html``, one offline page (no network, no server).

Written by ``lico-bench report`` and ``figures`` (and so by ``run``) from the result files
alone, with the template ``browser.html.j2`` (Jinja2) and plain JavaScript in it:

* the summary and method tables as written to summary.csv / methods.csv (the same strings),
  verdicts coloured, every column sortable, and a link from each score or paired row to the
  images behind it (sorted worst first for that metric or paired difference);
* an image browser over every evaluated image: the input, its mask and each experiment's map
  (``thumbs/``, :mod:`lico_bench.bench.thumbs`), the label, each model's prediction and
  probability and every metric; sort by any metric or paired difference (LICO - baseline,
  same method, seed and image), filter by class and by a model's correct/incorrect; only
  the rows on screen are in the page's DOM, so only their sheets are loaded;
* the figures (``figures/*.png``) and the manifest's command, versions, git commit, and the
  wall time of the last ``run`` (``wall_time.json``).

Every link is relative, so the folder can be zipped or published as it is. Results written
before the runner saved ``thumbs/`` get the values without pictures and a one-line note.
The data is embedded as JSON in the page: per experiment, one array per column over the
images (6 significant digits, NaN as null).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from ..io import read_bounded_text, write_text
from .common import load_manifest, load_rows, metric_directions, pair_models, side_name
from .figure_files import THUMB_META, THUMBS_PER_ROW, THUMBS_PER_SHEET, WALL_TIME, sheets_complete

PAGE = Path("index.html")
TEMPLATE = "browser.html.j2"
# row fields that are not values to sort by (ids and the explained class)
_NOT_VALUES = {"dataset", "model", "method", "seed", "image_id", "label", "pred", "target"}


def _num(v) -> Optional[float]:
    """A value for the page: 6 significant digits, NaN/inf/None as None (JSON null)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return float(f"{f:.6g}") if math.isfinite(f) else None


def _read_csv(path: Path) -> Optional[Dict[str, list]]:
    """A table file as {"header": [...], "rows": [[str, ...]]}, the strings as written."""
    if not path.is_file():
        return None
    rows = list(csv.reader(io.StringIO(path.read_text())))
    return {"header": rows[0], "rows": rows[1:]} if rows else None


def _small_json(path: Path):
    """A small JSON file the runner wrote (``thumbs/meta.json``, ``wall_time.json``), or None
    where it is absent or not JSON; a FIFO, device or a file over 64 KiB is a one-line
    UserError (lico_bench.io.read_bounded_text)."""
    if not path.exists():
        return None
    try:
        return json.loads(read_bounded_text(path, f"results file {path}", 2 ** 16))
    except ValueError:
        return None


def _thumbs(results: Path, n: int) -> Optional[dict]:
    """``thumbs/meta.json`` when it covers the ``n`` images, else None."""
    meta = _small_json(results / THUMB_META)
    if not isinstance(meta, dict) or meta.get("n_images") != n or not isinstance(meta.get("tile"), int):
        return None
    if meta.get("per_row") != THUMBS_PER_ROW or meta.get("per_sheet") != THUMBS_PER_SHEET:
        return None
    return meta


def page_data(results: Path, manifest: dict, rows: pd.DataFrame) -> dict:
    """What the page's JavaScript reads (embedded as JSON): images, experiments' columns,
    metric directions, model pairs, the names their verdicts give the trained side ("LICO",
    "guided", ...: common.side_name) and the thumbnails' layout."""
    directions = metric_directions(manifest, rows)
    ids = sorted(int(i) for i in rows["image_id"].unique())
    pos = {i: k for k, i in enumerate(ids)}
    n = len(ids)
    value_cols = [c for c in rows.columns if c not in _NOT_VALUES
                  and pd.api.types.is_numeric_dtype(rows[c]) and not pd.api.types.is_bool_dtype(rows[c])]
    first = [c for c in ("prob", "target_prob") if c in value_cols]   # then metrics, then the rest
    value_cols = first + [c for c in directions if c in value_cols and c not in first] + sorted(
        c for c in value_cols if c not in directions and c not in first)
    labels: List[Optional[int]] = [None] * n
    meta = _thumbs(results, n)
    exps = []
    for (model, method, seed), g in rows.groupby(["model", "method", "seed"], sort=False):
        key = f"{g['dataset'].iloc[0]}__{model}__{str(method).replace(':', '-')}__seed{int(seed)}"
        at = [pos[int(i)] for i in g["image_id"]]
        pred: List[Optional[int]] = [None] * n
        values = {c: [None] * n for c in value_cols}
        for k, (lab, p) in zip(at, zip(g["label"], g["pred"])):
            labels[k], pred[k] = int(lab), int(p)
        for c in value_cols:
            col = values[c]
            for k, v in zip(at, g[c]):
                col[k] = _num(v)
        exps.append({"key": key, "model": str(model), "method": str(method), "seed": int(seed),
                     "thumbs": meta is not None and sheets_complete(results, key, n),
                     "pred": pred, "values": values})
    names = (manifest.get("dataset") or {}).get("class_names") or []
    pairs = pair_models(sorted(rows["model"].unique()), manifest)
    return {"ids": ids, "labels": labels, "class_names": [str(c) for c in names],
            "columns": value_cols, "higher": {c: directions.get(c) for c in value_cols},
            "pairs": [list(p) for p in pairs],
            "sides": sorted({side_name(m, manifest) for m, _ in pairs}),
            "exps": exps, "tile": meta["tile"] if meta else None, "per_row": THUMBS_PER_ROW,
            "per_sheet": THUMBS_PER_SHEET,
            "inputs": meta is not None and sheets_complete(results, "inputs", n),
            "masks": bool(meta and meta.get("masks")) and sheets_complete(results, "masks", n)}


def _json_for_script(obj) -> str:
    """JSON that cannot end its <script> element early."""
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def build_page(results: str | Path, manifest: Optional[dict] = None,
               rows: Optional[pd.DataFrame] = None) -> Path:
    """Write ``results/index.html`` (atomically) from the files of ``results``; return its path."""
    import jinja2

    results = Path(results)
    manifest = manifest if manifest is not None else load_manifest(results)
    rows = rows if rows is not None else load_rows(results, manifest)
    data = page_data(results, manifest, rows)
    wall = _small_json(results / WALL_TIME)
    wall = wall.get("wall_s") if isinstance(wall, dict) else None
    wall = wall if isinstance(wall, (int, float)) and math.isfinite(wall) else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    figures = sorted(p.relative_to(results).as_posix() for p in (results / "figures").glob("*.png"))
    html = env.get_template(TEMPLATE).render(
        title=results.resolve().name, manifest=manifest, wall_s=wall, figures=figures,
        tables=[(name, t) for name, t in (("Summary", _read_csv(results / "summary.csv")),
                                          ("Method comparison", _read_csv(results / "methods.csv")))
                if t is not None],
        n_images=len(data["ids"]), has_thumbs=data["tile"] is not None,
        data_json=_json_for_script(data))
    return write_text(results / PAGE, html)

"""``lico-bench figures RESULTS_DIR``: paper figures from the result files alone.

Six kinds of figure, each written as vector PDF and 200-dpi PNG (atomically) under
``<results>/figures/`` by default:

* ``maps``: the saved maps of the first images (``maps/*.pt``), rows = images, columns = the
  input then, per method, the baseline and the LICO map side by side, overlaid on the input
  the runner saved (``inputs.pt``; viridis, colour-blind safe), with the ground-truth
  mask contour (white) where the dataset has masks and the pointing-game point the runner
  saved (the map's first maximum, ``+`` marker). Without saved inputs (results written
  before they were saved) the maps are drawn alone and a note says so.
* ``curves``: insertion (top row) and deletion (bottom row) curves, one panel per method,
  baseline vs LICO; the mean curve over images with a 95 % normal band.
* ``paired``: forest plot of the paired difference LICO - baseline per method x metric with
  its 95 % CI (from :func:`lico_bench.report.tables.compute_summary`), a zero line and the
  side on which LICO is better.
* ``methods_rank``: per model, the mean rank of each method per metric (1 = best) with its
  95 % bootstrap CI, and each metric's Krippendorff alpha (images as raters, Tomsett et al.
  2020) under its name (:mod:`lico_bench.report.methods`); drawn with two or more methods.
* ``metric_agreement``: per model, the Kendall tau-b between every two metrics' orderings of
  the methods (mean per image; in brackets, between the mean-rank orderings).
* ``training``: loss terms (CE, MM, OT) and accuracy per epoch, from the training log of
  every checkpoint in the manifest, copied by the runner into ``logs/``.
* ``epochs``: each metric against the training epoch, per trained model with its band over
  seeds, when the run explains kept epochs (``M@eN``; :mod:`lico_bench.report.epochs`).
* ``randomisation_*``: the model-parameter randomisation figures, when the rows hold that
  metric (:mod:`lico_bench.report.sanity_figures`).

Every figure reads the results directory only (:mod:`lico_bench.report.figure_files` lists
the files); one module per kind draws it (maps_figure, curve_figures, training_figure,
method_figures, sanity_figures; figure_style holds the shared look).

Models are paired as the tables pair them (:func:`lico_bench.report.tables.pair_models`:
every LICO model, variants included, with the baseline of its architecture, from the
manifest's ``models`` families); with several
pairs, ``maps`` and ``curves`` are drawn once per pair (``maps_X``, ``curves_X``, X = the LICO
model's name without ``lico_``); unpaired models are drawn together in one more group.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import UserError
from .curve_figures import plot_curves, plot_paired
from .epochs import epoch_table, has_kept_epochs, plot_epochs
from .figure_files import LOGS, find_training_logs, read_curves
from .figure_style import (BASELINE_COLOUR, DOUBLE_COLUMN_IN, LICO_COLOUR, MAP_CMAP,  # noqa: F401
                           OTHER_COLOURS, PNG_DPI, SINGLE_COLUMN_IN, STYLE, _plt, _save, model_groups)
from .maps_figure import plot_map_grid
from .method_figures import plot_method_ranks, plot_metric_agreement  # noqa: F401
from .common import load_manifest, load_rows, metric_directions
from .method_stats import compute_method_summary, method_order
from .sanity_figures import build_sanity_figures
from .tables import compute_summary
from .training_figure import plot_training


def build_figures(results_dir: str | Path, out: Optional[str | Path] = None,
                  formats: Sequence[str] = ("png", "pdf")) -> Dict[str, List]:
    """Draw every figure of ``results_dir``; return ``{figure name: [paths]}``.

    Names: ``maps``, ``curves`` (suffixed ``_X`` per model pair when there are several),
    ``paired``, ``methods_rank`` and ``metric_agreement`` (two or more methods) and
    ``training``. A figure that cannot be drawn from the files present is
    skipped, and the returned dict then also holds ``"notes"``: a list of one-line strings
    (not paths) saying what was skipped and why.
    """
    results = Path(results_dir)
    formats = [f.strip().lower().lstrip(".") for f in formats if f and f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise UserError(f"unsupported figure format(s) {bad or formats}; use png, pdf or svg.")
    out = Path(out) if out is not None else results / "figures"
    if out.exists() and not out.is_dir():  # found before minutes of drawing, not after
        raise UserError(f"--out {out} is a file; figures go into a folder: pass a folder "
                        "(it is created if needed).")
    manifest = load_manifest(results)
    rows = load_rows(results, manifest)
    plt = _plt()
    result: Dict[str, List] = {}
    notes: List[str] = []
    spec = manifest.get("spec", {})
    models = ([m for m in spec.get("models", []) if m in set(rows["model"])]
              or sorted(rows["model"].unique()))
    methods = ([m for m in spec.get("methods", []) if m in set(rows["method"])]
               or sorted(rows["method"].unique()))
    seeds = sorted(int(s) for s in rows["seed"].unique()) if "seed" in rows else [0]
    groups = model_groups(models, manifest)
    curves = read_curves(results)
    with plt.rc_context(STYLE):
        for label, gm in groups:
            suffix = f"_{label}" if len(groups) > 1 and label else ""
            fig = plot_map_grid(results, manifest, gm, methods, seed=seeds[0], notes=notes)
            if fig is None:
                notes.append(f"maps{suffix}: no saved maps (maps/*.pt) for {', '.join(gm)}")
            else:
                result[f"maps{suffix}"] = _save(fig, out, f"maps{suffix}", formats)
            fig = plot_curves(curves, rows, gm, methods)
            if fig is None:
                notes.append(f"curves{suffix}: the rows hold no insertion/deletion curves")
            else:
                result[f"curves{suffix}"] = _save(fig, out, f"curves{suffix}", formats)
        directions = metric_directions(manifest, rows)
        summary = compute_summary(rows, directions, manifest) if directions else None
        fig = plot_paired(summary) if summary is not None else None
        if fig is None:
            notes.append("paired: no baseline_X/lico_X pair evaluated on the same images")
        else:
            result["paired"] = _save(fig, out, "paired", formats)
        if len(methods) >= 2 and directions:
            ms = compute_method_summary(rows, directions, manifest)
            for name, fig in (("methods_rank", plot_method_ranks(ms, directions, method_order(rows, manifest))),
                              ("metric_agreement", plot_metric_agreement(ms, directions))):
                if fig is None:
                    notes.append(f"{name}: nothing to draw")
                else:
                    result[name] = _save(fig, out, name, formats)
        else:
            notes.append("methods_rank, metric_agreement: fewer than two methods to compare")
        build_sanity_figures(results, manifest, curves, groups, methods, seeds[0], out, formats,
                             result, notes)
        logs, missing = find_training_logs(results, manifest)
        fig = plot_training(logs) if logs else None
        if fig is None:
            notes.append(f"training: no training logs ({LOGS}/) for the manifest's checkpoints"
                         + (f" ({', '.join(missing)})" if missing else ""))
        else:
            result["training"] = _save(fig, out, "training", formats)
            if missing:
                notes.append(f"training: no training log for {', '.join(missing)}")
        if directions and has_kept_epochs(models):   # run --model M@eN: issue 25
            fig = plot_epochs(epoch_table(rows, directions, manifest, results))
            if fig is not None:
                result["epochs"] = _save(fig, out, "epochs", formats)
    if notes:
        result["notes"] = notes
    return result

"""``lico-bench figures RESULTS_DIR``: paper figures from the result files alone.

Six kinds of figure, each written as vector PDF and 200-dpi PNG (atomically) under
``<results>/figures/`` by default:

* ``maps``: the saved maps of the first images (``maps/*.pt``), rows = images, columns = the
  input then, per method, the baseline and the LICO map side by side, overlaid on the input
  re-created from the dataset named in the manifest (viridis, colour-blind safe), with the
  ground-truth mask contour (white) where the dataset has masks and the pointing-game point
  (the map's first maximum, ``+`` marker). When the dataset cannot be re-created the maps
  are drawn alone and a note says so.
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
* ``training``: loss terms (CE, MM, OT) and accuracy per epoch, from the ``log.csv`` next to
  every checkpoint in the manifest.
* ``randomisation_*``: the model-parameter randomisation figures, when the rows hold that
  metric (:mod:`lico_bench.report.sanity_figures`).

Models are paired as the tables pair them (:func:`lico_bench.report.tables.pair_models`:
every LICO model, variants included, with the baseline of its architecture); with several
pairs, ``maps`` and ``curves`` are drawn once per pair (``maps_X``, ``curves_X``, X = the LICO
model's name without ``lico_``); unpaired models are drawn together in one more group.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from ..io import atomic_path, safe_torch_load
from .methods import compute_method_summary, method_order
from .tables import NICE, compute_summary, load_manifest, load_rows, metric_directions, pair_models

BASELINE_COLOUR = "#0072B2"  # Okabe-Ito blue
LICO_COLOUR = "#D55E00"      # Okabe-Ito vermillion
OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MAP_CMAP = "viridis"
MAP_ALPHA = 0.55
POINT_COLOUR = "#FF2BD6"     # pointing-game marker: stands out against viridis
SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 7.0
PNG_DPI = 200

STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.1,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the PDF
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- helpers
def model_groups(models: Sequence[str], manifest: Optional[dict] = None) -> List[Tuple[str, List[str]]]:
    """Group models for side-by-side figures: [(label, [baseline, lico]), ...].

    Every pair of :func:`~lico_bench.report.tables.pair_models` (the tables' pairing) forms a
    group labelled by the LICO model's name without ``lico_`` (a baseline shared by several
    LICO variants is in each of their groups); the other models form one group labelled by
    their names (or nothing when there are none).
    """
    models = list(dict.fromkeys(models))
    groups, used = [], set()
    for m, base in pair_models(models, manifest):
        groups.append((m[5:] if m.startswith("lico_") else m, [base, m]))
        used.update((base, m))
    rest = [m for m in models if m not in used]
    rest.sort(key=lambda m: (not m.startswith("baseline_"), m))
    if rest:
        groups.append(("_".join(rest) if groups else "", rest))
    return groups


def _colours(models: Sequence[str]) -> Dict[str, str]:
    out, k = {}, 0
    n_base = sum(m.startswith("baseline_") for m in models)
    n_lico = sum(m.startswith("lico_") for m in models)
    for m in models:
        if m.startswith("baseline_") and n_base == 1:
            out[m] = BASELINE_COLOUR
        elif m.startswith("lico_") and n_lico == 1:
            out[m] = LICO_COLOUR
        else:
            out[m] = OTHER_COLOURS[k % len(OTHER_COLOURS)]
            k += 1
    return out


def _short_names(models: Sequence[str]) -> Dict[str, str]:
    """"baseline"/"LICO" for a pair (the pair is named elsewhere), else the pretty name."""
    if _pair_label(models):
        return {m: "baseline" if m.startswith("baseline_") else "LICO" for m in models}
    return {m: _pretty_model(m) for m in models}


def _pair_label(models: Sequence[str]) -> str:
    if (len(models) == 2 and models[0].startswith("baseline_") and models[1].startswith("lico_")
            and models[0][9:] == models[1][5:]):
        return f" ({models[0][9:]})"
    return ""


def _pretty_model(m: str) -> str:
    if m.startswith("baseline_"):
        return f"baseline ({m[9:]})"
    if m.startswith("lico_"):
        return f"LICO ({m[5:]})"
    return m


def _save(fig, out: Path, name: str, formats: Sequence[str]) -> List[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI)
        paths.append(path)
    _plt().close(fig)
    return paths


def _read_curves(results: Path) -> Dict[Tuple[str, str], Dict[str, list]]:
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


def _resolve(path: str, results: Path) -> Optional[Path]:
    """A checkpoint path as written in the manifest (often relative to where the run was
    started): try it as given, then next to the results directory and its parents."""
    p = Path(path)
    cands = [p] if p.is_absolute() else [p, results / p, *[a / p for a in results.resolve().parents]]
    for c in cands:
        if c.exists() or (c.parent / "log.csv").exists():
            return c
    return None


# ----------------------------------------------------------------------------- maps
def _load_images(spec: dict, image_ids: List[int]):
    """(images [k,H,W,3] in [0,1], masks [k,H,W] bool or None) re-created from the dataset."""
    from ..data import create_dataset
    from ..data.show import denormalise

    ds = create_dataset(spec["dataset"], spec.get("split", "test"), root=spec.get("root"),
                        image_size=spec.get("image_size"), seed=0)
    batch = ds.get_batch(list(image_ids))
    imgs = denormalise(batch.images, ds.info.mean, ds.info.std).permute(0, 2, 3, 1).numpy()
    masks = batch.masks.numpy().astype(bool) if batch.masks is not None else None
    labels = [ds.info.class_names[int(i)] for i in batch.labels]
    return imgs, masks, labels


def plot_map_grid(results: Path, manifest: dict, models: List[str], methods: List[str],
                  seed: int, n_images: int = 6, notes: Optional[List[str]] = None):
    """Rows = saved images, columns = input + (per method) each model's map. None if no maps."""
    import torch

    from ..explainers.base import normalize_maps
    from ..metrics.pointing import pointing_points

    plt = _plt()
    spec = manifest.get("spec", {})
    dataset = spec.get("dataset", "?")
    saved = {}
    for model in models:
        for method in methods:
            key = f"{dataset}__{model}__{method.replace(':', '-')}__seed{seed}"
            path = results / "maps" / f"{key}.pt"
            if path.exists():
                saved[(model, method)] = safe_torch_load(
                    path, f"maps file {path}", "delete it and run the same command again",
                    kind="maps file")
    if not saved:
        return None
    # Images present in every saved file, in order.
    ids = None
    for d in saved.values():
        s = [int(i) for i in d["image_ids"]]
        ids = s if ids is None else [i for i in ids if i in s]
    ids = (ids or [])[:n_images]
    if not ids:
        return None
    try:
        imgs, masks, labels = _load_images(spec, ids)
    except Exception as e:  # real dataset files gone, etc.: draw the maps alone
        imgs = masks = labels = None
        if notes is not None:
            notes.append(f"maps: input images not re-created ({type(e).__name__}: {e}); maps drawn alone")
    columns = [(m, meth) for meth in methods for m in models]
    first = 1 if imgs is not None else 0  # the input column, when the inputs are known
    ncols = first + len(columns)
    cell = min(0.85, (DOUBLE_COLUMN_IN - 0.2) / ncols)
    fig, axes = plt.subplots(len(ids), ncols, figsize=(cell * ncols + 0.2, cell * len(ids) + 0.45),
                             squeeze=False, gridspec_kw=dict(wspace=0.04, hspace=0.04))
    im = None
    for r, iid in enumerate(ids):
        img = imgs[r] if imgs is not None else None
        ax = axes[r, 0]
        if img is not None and first:
            ax.imshow(img, interpolation="nearest")
            if masks is not None and masks[r].any():
                ax.contour(masks[r].astype(float), levels=[0.5], colors="white", linewidths=0.7)
            ax.set_ylabel(labels[r], fontsize=6, rotation=0, ha="right", va="center")
        for c, (model, method) in enumerate(columns, start=first):
            ax = axes[r, c]
            d = saved.get((model, method))
            if d is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=6)
                continue
            j = [int(i) for i in d["image_ids"]].index(iid)
            raw = torch.as_tensor(d["maps"][j]).float()
            raw = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
            shown = normalize_maps(raw[None])[0].numpy()
            if img is not None:
                if shown.shape != img.shape[:2]:
                    shown = torch.nn.functional.interpolate(
                        torch.as_tensor(shown)[None, None], size=img.shape[:2], mode="bilinear",
                        align_corners=False)[0, 0].numpy()
                    raw = torch.as_tensor(shown)
                ax.imshow(img, interpolation="nearest")
                im = ax.imshow(shown, cmap=MAP_CMAP, alpha=MAP_ALPHA, vmin=0, vmax=1,
                               interpolation="bilinear")
            else:
                im = ax.imshow(shown, cmap=MAP_CMAP, vmin=0, vmax=1, interpolation="bilinear")
            if masks is not None and img is not None and masks[r].any() and masks[r].shape == shown.shape:
                ax.contour(masks[r].astype(float), levels=[0.5], colors="white", linewidths=0.7)
            y, x = pointing_points(raw[None])[0].tolist()
            ax.plot([x], [y], marker="+", color=POINT_COLOUR, markersize=6, markeredgewidth=1.4)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    if first:
        axes[0, 0].set_title("input", fontsize=6)
    for c, (model, method) in enumerate(columns, start=first):
        axes[0, c].set_title(f"{method}\n{_pretty_model(model)}", fontsize=6,
                             color=_colours(models)[model] if len(models) > 1 else "black")
    if im is not None:
        cax = fig.add_axes([0.92, 0.3, 0.012, 0.4])
        cb = fig.colorbar(im, cax=cax, ticks=[0, 1])
        cb.ax.tick_params(labelsize=5, length=1.5)
        cb.set_label("saliency (min-max)", fontsize=5)
        fig.subplots_adjust(right=0.9)
    extra = " white: ground-truth mask;" if masks is not None else ""
    for ax in axes.flat:  # settle the equal-aspect positions before placing the caption
        ax.apply_aspect()
    bottom = min(ax.get_position().y0 for ax in axes[-1])
    fig.text(0.5, bottom - 0.01, f"{dataset}, seed {seed}.{extra} +: pointing-game point "
             "(map maximum)", ha="center", va="top", fontsize=5.5)
    return fig


# ----------------------------------------------------------------------------- curves
def _mean_band(curves: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over images and the 95 % normal band mean +- 1.96 SD / sqrt(n)."""
    c = curves[np.isfinite(curves).all(1)]
    mean = c.mean(0)
    half = 1.96 * c.std(0, ddof=1) / math.sqrt(len(c)) if len(c) > 1 else np.zeros_like(mean)
    return mean, mean - half, mean + half


def plot_curves(curves: Dict[Tuple[str, str], Dict[str, list]], rows, models: List[str],
                methods: List[str]):
    """Insertion (top) and deletion (bottom) curves, one column per method.

    Each line is the mean curve over images (pooled over seeds); the band is the 95 %
    *normal* interval of that mean, mean +- 1.96 SD/sqrt(n) pointwise over images. x is
    the fraction of pixels inserted/deleted (n+1 evenly spaced points of [0, 1]). The AUC
    in the legend is the mean per-image AUC from the rows (the number in the tables).
    """
    plt = _plt()
    kinds = [k for k in ("insertion", "deletion")
             if any(k in curves.get((m, meth), {}) for m in models for meth in methods)]
    if not kinds:
        return None
    col = _colours(models)
    short = _short_names(models)
    ncols = len(methods)
    width = min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 1.75 * ncols + 0.3))
    fig, axes = plt.subplots(len(kinds), ncols, figsize=(width, 1.55 * len(kinds) + 0.35),
                             squeeze=False, sharex=True, sharey="row")
    for r, kind in enumerate(kinds):
        for c, method in enumerate(methods):
            ax = axes[r, c]
            for model in models:
                data = curves.get((model, method), {}).get(kind)
                if not data:
                    continue
                arr = np.asarray(data, dtype=float)
                mean, lo, hi = _mean_band(arr)
                x = np.linspace(0, 1, arr.shape[1])
                sel = rows[(rows["model"] == model) & (rows["method"] == method)]
                if kind in sel.columns and sel[kind].notna().any():
                    a = float(np.nanmean(sel[kind]))
                else:
                    trapezoid = getattr(np, "trapezoid", None) or np.trapz
                    a = float(trapezoid(mean, x))
                ax.fill_between(x, lo, hi, color=col[model], alpha=0.22, linewidth=0)
                ax.plot(x, mean, color=col[model], label=f"{short[model]} AUC {a:.3f}")
            if r == 0:
                ax.set_title(method)
            if c == 0:
                ax.set_ylabel(f"{NICE.get(kind, kind)}\nclass probability")
            if r == len(kinds) - 1:
                ax.set_xlabel("fraction of pixels")
            ax.set_xlim(0, 1)
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper right" if kind == "deletion" else "lower right", handlelength=1.0,
                      borderaxespad=0.2, handletextpad=0.4, labelspacing=0.25)
    pair = _pair_label(models)
    fig.suptitle(f"Insertion (↑) and deletion (↓) curves{pair}: mean over images, 95 % normal band")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- paired
def plot_paired(summary) -> Optional[object]:
    """Forest plot of LICO - baseline per method x metric, 95 % CI (compute_summary's)."""
    plt = _plt()
    p = summary[summary["kind"] == "paired"] if "kind" in summary else summary.iloc[0:0]
    if p.empty:
        return None
    metrics = list(dict.fromkeys(p["metric"]))
    methods = sorted(p["method"].unique())
    comps = list(dict.fromkeys(p["model"]))
    ncols = len(metrics)
    width = min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 1.45 * ncols + 0.8))
    height = 0.9 + 0.22 * len(methods) * len(comps)
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False, sharey=True)
    offsets = np.linspace(-0.18, 0.18, len(comps)) if len(comps) > 1 else [0.0]
    markers = "osD^v"
    for c, metric in enumerate(metrics):
        ax = axes[0, c]
        g = p[p["metric"] == metric]
        hib = bool(g["higher_is_better"].iloc[0])
        ax.axvline(0, color="0.4", linewidth=0.6, linestyle="--", zorder=0)
        for k, comp in enumerate(comps):
            for y, method in enumerate(methods):
                rr = g[(g["model"] == comp) & (g["method"] == method)]
                if rr.empty:
                    continue
                r = rr.iloc[0]
                m, lo, hi = 100 * r["mean"], 100 * r["ci_low"], 100 * r["ci_high"]
                if not np.isfinite(m):
                    continue
                if "verdict" in r.index and isinstance(r["verdict"], str):
                    sig = r["verdict"] != "no clear difference"   # the table's rule (Holm too)
                else:                                               # a summary from before it
                    sig = bool(np.isfinite(lo) and not (lo <= 0 <= hi))
                better = sig and ((lo > 0) == hib)
                colour = LICO_COLOUR if better else (BASELINE_COLOUR if sig else "0.3")
                yy = y + offsets[k]
                if np.isfinite(lo):
                    ax.plot([lo, hi], [yy, yy], color=colour, linewidth=1.0)
                ax.plot([m], [yy], marker=markers[k % len(markers)], color=colour, markersize=3.5,
                        markerfacecolor=colour if sig else "white", markeredgewidth=0.9,
                        label=comp if (c == 0 and y == 0) else None)
        ax.set_title(f"{NICE.get(metric, metric)} {'↑' if hib else '↓'}")
        # The better direction, under the axis, pointing to the side where LICO wins.
        ax.set_xlabel("LICO better →" if hib else "← LICO better", color=LICO_COLOUR,
                      loc="right" if hib else "left", fontsize=6)
        lo_x, hi_x = ax.get_xlim()
        span = max(abs(lo_x), abs(hi_x))
        ax.set_xlim(-span, span)
        ax.margins(y=0.15)
    axes[0, 0].set_yticks(range(len(methods)))
    axes[0, 0].set_yticklabels(methods)
    axes[0, 0].invert_yaxis()
    if len(comps) > 1:
        axes[0, 0].legend(loc="lower left", fontsize=5)
    fig.suptitle("Paired difference LICO − baseline (same images), % points: mean and 95 % CI; "
                 "filled = a side named (CI excludes 0 and Holm p < 0.05)", fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training
def _read_log(path: Path) -> Dict[str, np.ndarray]:
    with open(path, newline="") as f:
        recs = list(csv.DictReader(f))
    out = {}
    for k in (recs[0].keys() if recs else []):
        try:
            out[k] = np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in recs])
        except ValueError:
            continue
    return out


def find_training_logs(results: Path, manifest: dict) -> Tuple[Dict[str, Path], List[str]]:
    """model@seed -> log.csv for every checkpoint of the manifest that has one; and misses."""
    found, missing = {}, []
    for key, ck in sorted((manifest.get("checkpoints") or {}).items()):
        p = _resolve(str(ck), results)
        log = p.parent / "log.csv" if p is not None else None
        if log is not None and log.exists():
            found[key] = log
        else:
            missing.append(key)
    return found, missing


def plot_training(logs: Dict[str, Path]):
    """Per epoch: CE loss; LICO's MM and OT terms (log scale); train/test accuracy."""
    plt = _plt()
    data = {}
    for key, path in logs.items():
        try:
            d = _read_log(path)
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
        if "epoch" in d and len(d["epoch"]):
            data[key] = d
    if not data:
        return None
    models = list(dict.fromkeys(k.split("@")[0] for k in data))
    col = _colours(models)
    has_lico_terms = any(np.isfinite(d.get(t, np.array([np.nan]))).any()
                         for d in data.values() for t in ("mm", "ot"))
    panels = ["ce"] + (["lico"] if has_lico_terms else []) + ["acc"]
    width = DOUBLE_COLUMN_IN if len(panels) == 3 else 4.8
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 1.9), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    seen = set()
    for key, d in data.items():
        model = key.split("@")[0]
        e = d["epoch"]
        mk = dict(marker="o", markersize=2.2) if len(e) <= 15 else {}
        first = model not in seen
        seen.add(model)
        lab = _pretty_model(model)
        if "ce" in d or "loss" in d:
            y = d.get("ce", d.get("loss"))
            axes["ce"].plot(e, y, color=col[model], label=lab if first else None, **mk)
        if "lico" in axes:
            for term, ls in (("mm", "--"), ("ot", ":")):
                y = d.get(term)
                if y is not None and np.isfinite(y).any():
                    axes["lico"].plot(e, y, color=col[model], linestyle=ls,
                                      label=f"{lab} {term.upper()}" if first else None, **mk)
        for term, ls in (("test_acc", "-"), ("train_acc", "--")):
            y = d.get(term)
            if y is not None and np.isfinite(y).any():
                axes["acc"].plot(e, 100 * y, color=col[model], linestyle=ls,
                                 label=f"{lab} {term.split('_')[0]}" if first else None, **mk)
    axes["ce"].set_title("cross-entropy loss")
    axes["ce"].set_ylabel("loss")
    if "lico" in axes:
        axes["lico"].set_title("LICO terms: MM (--), OT (··)")
        if all((np.asarray(l.get_ydata(), float)[np.isfinite(l.get_ydata())] > 0).all()
               for l in axes["lico"].get_lines()):
            axes["lico"].set_yscale("log")
    axes["acc"].set_title("accuracy (test —, train --)")
    axes["acc"].set_ylabel("%")
    for ax in axes.values():
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_lines():
            ax.legend(handlelength=1.6, fontsize=5)
    fig.suptitle("Training curves (log.csv of each checkpoint)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- methods
def _heatmap_frame(ax, model: str) -> None:
    """A heat map panel's frame: the model as title, no spines, no tick marks."""
    ax.set_title(_pretty_model(model))
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0)


def plot_method_ranks(ms, directions: Dict[str, bool], methods: Sequence[str]):
    """Rank heat map: one panel per model, rows = methods, columns = metrics.

    Colour and text = the mean rank (1 = best; :func:`lico_bench.report.methods.compute_method_summary`)
    with its 95 % bootstrap CI; under each metric's name its ordinal Krippendorff alpha
    (images as raters, Tomsett et al. 2020), the number that says whether the column can be
    read as a ranking at all. None without rank rows.
    """
    plt = _plt()
    rk = ms[ms["kind"] == "rank"] if "kind" in ms else ms.iloc[0:0]
    if rk.empty:
        return None
    al = ms[ms["kind"] == "alpha"]
    models = sorted(rk["model"].unique())
    metrics = [m for m in directions if (rk["metric"] == m).any()]
    k = len(methods)
    cell_w, cell_h = 0.62, 0.34
    width = min(DOUBLE_COLUMN_IN, len(models) * (cell_w * len(metrics) + 0.9) + 0.6)
    fig, axes = plt.subplots(1, len(models), figsize=(width, cell_h * k + 1.3), squeeze=False,
                             sharey=True)
    im = None
    for c, model in enumerate(models):
        ax = axes[0, c]
        g = rk[rk["model"] == model]
        mean = np.full((k, len(metrics)), np.nan)
        for _, r in g.iterrows():
            if r["method"] in methods and r["metric"] in metrics:
                i, j = list(methods).index(r["method"]), metrics.index(r["metric"])
                mean[i, j] = r["mean"]
                lo, hi = r["ci_low"], r["ci_high"]
                txt = f"{r['mean']:.2f}" + (f"\n[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "")
                shade = (r["mean"] - 1) / max(k - 1, 1) if np.isfinite(r["mean"]) else 0.5
                ax.text(j, i, txt, ha="center", va="center", fontsize=5,
                        color="white" if shade < 0.45 else "black")   # viridis: dark at rank 1
        im = ax.imshow(mean, cmap="viridis", vmin=1, vmax=max(k, 2), aspect="auto")
        labels = []
        for m in metrics:
            a = al[(al["model"] == model) & (al["metric"] == m)]
            av = float(a["mean"].iloc[0]) if len(a) else float("nan")
            alpha_txt = f"α {av:.2f}" if np.isfinite(av) else "α n/a"
            labels.append(f"{NICE.get(m, m)} {'↑' if directions[m] else '↓'}\n{alpha_txt}")
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=5.5)
        ax.set_yticks(range(k))
        ax.set_yticklabels(list(methods))
        _heatmap_frame(ax, model)
    if im is not None:
        cb = fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.04, pad=0.02)
        cb.set_label("mean rank (1 = best)", fontsize=6)
        cb.ax.invert_yaxis()
    fig.suptitle("Mean rank of each method per metric, 95 % bootstrap CI; "
                 "α: Krippendorff (ordinal), images as raters of the methods", fontsize=7)
    return fig


def plot_metric_agreement(ms, directions: Dict[str, bool]):
    """Metric-agreement matrix: one panel per model, Kendall tau-b between metrics.

    Colour and first line = the mean over images of the per-image tau-b between the two
    metrics' orderings of the methods; second line = tau between their mean-rank orderings
    (``tau_overall``). Diagonal = 1. None without tau rows.
    """
    plt = _plt()
    t = ms[ms["kind"] == "tau"] if "kind" in ms else ms.iloc[0:0]
    if t.empty:
        return None
    models = sorted(t["model"].unique())
    metrics = [m for m in directions if (t["metric"] == m).any() or (t["metric_b"] == m).any()]
    q = len(metrics)
    side = 0.5 * q + 0.9
    fig, axes = plt.subplots(1, len(models), figsize=(min(DOUBLE_COLUMN_IN, side * len(models) + 0.6),
                                                      0.5 * q + 1.4), squeeze=False)
    im = None
    for c, model in enumerate(models):
        ax = axes[0, c]
        tau = np.eye(q)
        overall = np.eye(q)
        for _, r in t[t["model"] == model].iterrows():
            i, j = metrics.index(r["metric"]), metrics.index(r["metric_b"])
            tau[i, j] = tau[j, i] = r["mean"]
            overall[i, j] = overall[j, i] = r["tau_overall"]
        im = ax.imshow(tau, cmap="PuOr_r", vmin=-1, vmax=1)
        for i in range(q):
            for j in range(q):
                if i == j:
                    continue
                txt = (f"{tau[i, j]:.2f}" if np.isfinite(tau[i, j]) else "n/a") + \
                    (f"\n({overall[i, j]:.2f})" if np.isfinite(overall[i, j]) else "\n(n/a)")
                ax.text(j, i, txt, ha="center", va="center", fontsize=5,
                        color="white" if np.isfinite(tau[i, j]) and abs(tau[i, j]) > 0.6 else "black")
        names = [f"{NICE.get(m, m)} {'↑' if directions[m] else '↓'}" for m in metrics]
        ax.set_xticks(range(q))
        ax.set_xticklabels(names, rotation=35, ha="right", rotation_mode="anchor", fontsize=5.5)
        ax.set_yticks(range(q))
        ax.set_yticklabels(names if c == 0 else [""] * q, fontsize=5.5)
        _heatmap_frame(ax, model)
    if im is not None:
        cb = fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.04, pad=0.02)
        cb.set_label("Kendall τ-b", fontsize=6)
    fig.suptitle("Agreement between metrics on the order of the methods: mean per-image Kendall "
                 "τ-b (in brackets: τ of the mean-rank orderings)", fontsize=7)
    return fig


# ----------------------------------------------------------------------------- entry point
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
    rows = load_rows(results)
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
    curves = _read_curves(results)
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
        from .sanity_figures import build_sanity_figures  # randomisation_* (its module docstring)

        build_sanity_figures(results, manifest, curves, groups, methods, seeds[0], out, formats,
                             result, notes)
        logs, missing = find_training_logs(results, manifest)
        fig = plot_training(logs) if logs else None
        if fig is None:
            notes.append("training: no log.csv next to the manifest's checkpoints"
                         + (f" ({', '.join(missing)})" if missing else ""))
        else:
            result["training"] = _save(fig, out, "training", formats)
            if missing:
                notes.append(f"training: no log.csv for {', '.join(missing)}")
    if notes:
        result["notes"] = notes
    return result

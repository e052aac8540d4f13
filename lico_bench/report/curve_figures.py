"""The ``curves`` figure (insertion/deletion curves, baseline vs LICO) and the ``paired``
forest plot (LICO - baseline per method x metric), from the rows and their summary."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from .figure_style import (BASELINE_COLOUR, DOUBLE_COLUMN_IN, LICO_COLOUR, SINGLE_COLUMN_IN, _colours,
                           _pair_label, _plt, _short_names)
from .common import NICE, trained_side


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



def plot_paired(summary) -> Optional[object]:
    """Forest plot of LICO - baseline per method x metric, 95 % CI (compute_summary's)."""
    plt = _plt()
    p = summary[summary["kind"] == "paired"] if "kind" in summary else summary.iloc[0:0]
    if p.empty:
        return None
    metrics = list(dict.fromkeys(p["metric"]))
    methods = sorted(p["method"].unique())
    comps = list(dict.fromkeys(p["model"]))
    side = trained_side(comps)
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
        # The better direction, under the axis, pointing to the side where the trained model wins.
        ax.set_xlabel(f"{side} better →" if hib else f"← {side} better", color=LICO_COLOUR,
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
    fig.suptitle(f"Paired difference {side} − baseline (same images), % points: mean and 95 % CI; "
                 "filled = a side named (CI excludes 0 and Holm p < 0.05)", fontsize=7)
    fig.tight_layout()
    return fig

"""The method-comparison figures: ``methods_rank`` (mean rank of each method per metric,
Krippendorff alpha) and ``metric_agreement`` (Kendall tau-b between metrics), drawn from
:func:`lico_bench.report.methods.compute_method_summary`."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from .figure_style import DOUBLE_COLUMN_IN, _heatmap_frame, _plt
from .common import NICE


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

"""Figures of the model-parameter randomisation check (Adebayo et al. 2018), from the result
files alone (rows, manifest, ``maps/*.pt``); no model runs here.

* ``randomisation_<mode>`` (mode = cascading, independent; ``_X`` per model pair as the
  other figures): the classic plot, similarity vs stage (top stage first, as randomised),
  one line per method, the mean over images (pooled over seeds) with its 95 % percentile
  bootstrap band (:func:`lico_bench.report.stats.bootstrap_ci` at each stage); rows =
  Spearman rank correlation and SSIM, columns = the models (baseline, LICO). Lower = the
  map depends more on the weights; a method whose line stays near 1 fails the check.
* ``randomisation_maps_<mode>``: for the first saved image, each method's and model's map
  of the trained model, then after each stage (the maps the metric kept, pooled to <= 64 px),
  each min-max normalised for display.

Stage names come from the manifest (the metric records each model's stages); without them
the stages are numbered.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .figure_files import read_maps
from .figure_style import DOUBLE_COLUMN_IN, MAP_CMAP, _plt, _pretty_model, _save
from .maps_figure import _display
from .stats import bootstrap_ci

MODES = ("cascading", "independent")
SIMILARITIES = (("", "Spearman ρ"), ("_ssim", "SSIM"))
METHOD_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _stage_names(manifest: dict, metric: str, model: str, n: int) -> List[str]:
    names = manifest.get("metrics", {}).get(metric, {}).get("stages", {}).get(model)
    return list(names) if names and len(names) == n else [f"stage {k + 1}" for k in range(n)]


def mean_band(curves: np.ndarray, seed: int = 0):
    """curves: [n_images, S] -> (mean [S], low [S], high [S]): the mean over images and its 95 %
    percentile bootstrap interval at each stage (NaN images skipped)."""
    mean = np.nanmean(curves, axis=0)
    lo, hi = zip(*(bootstrap_ci(curves[:, k], seed) for k in range(curves.shape[1])))
    return mean, np.asarray(lo), np.asarray(hi)


def plot_stage_curves(curves: Dict, manifest: dict, models: List[str], methods: List[str], mode: str):
    """Similarity vs stage: rows = Spearman / SSIM, columns = models; None if nothing to draw."""

    metric = f"randomisation_{mode}"
    models = [m for m in models if any(metric in curves.get((m, x), {}) for x in methods)]
    if not models:
        return None
    plt = _plt()
    fig, axes = plt.subplots(2, len(models), figsize=(min(DOUBLE_COLUMN_IN, 2.6 * len(models) + 0.4), 3.6),
                             squeeze=False, sharey="row")
    for c, model in enumerate(models):
        for r, (suffix, label) in enumerate(SIMILARITIES):
            ax = axes[r, c]
            names: List[str] = []
            for i, method in enumerate(methods):
                data = curves.get((model, method), {}).get(metric + suffix)
                if not data:
                    continue
                arr = np.asarray(data, dtype=float)
                names = _stage_names(manifest, metric, model, arr.shape[1])
                mean, lo, hi = mean_band(arr)
                x = np.arange(arr.shape[1])
                colour = METHOD_COLOURS[i % len(METHOD_COLOURS)]
                ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
                ax.plot(x, mean, color=colour, marker="o", markersize=2.5, label=method)
            ax.axhline(0, color="0.6", linewidth=0.5, linestyle=":")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names if r == 1 else [""] * len(names), rotation=35, ha="right",
                               rotation_mode="anchor")
            ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.02)
            if r == 0:
                ax.set_title(_pretty_model(model))
            if c == 0:
                ax.set_ylabel(f"{label}\ntrained vs randomised")
            if r == 0 and c == len(models) - 1:
                ax.legend(loc="upper right", handlelength=1.0, borderaxespad=0.2)
    axes[1, 0].set_xlabel("randomised " + ("down to this stage" if mode == "cascading" else "stage alone"))
    fig.suptitle(f"Model-parameter randomisation ({mode}): similarity of the explanations, "
                 "mean over images, 95 % bootstrap band")
    fig.tight_layout()
    return fig


def plot_stage_maps(results: Path, manifest: dict, models: List[str], methods: List[str],
                    seed: int, mode: str, image: int = 0):
    """Map strip of the first saved image: rows = (method, model), columns = trained map then
    one per stage. None when no maps file holds the metric's maps."""
    import torch
    import torch.nn.functional as F

    metric = f"randomisation_{mode}"
    dataset = manifest.get("spec", {}).get("dataset", "?")
    strips = []
    for method in methods:
        for model in models:
            path = results / "maps" / f"{dataset}__{model}__{method.replace(':', '-')}__seed{seed}.pt"
            if not path.exists():
                continue
            d = read_maps(path)
            stage = d.get("metric_maps", {}).get(metric)
            if stage is None or len(stage) <= image:
                continue
            stage = torch.as_tensor(stage[image]).float()                       # [S, h, w]
            # the trained map, area-averaged to the stage maps' grid as the metric pooled them
            trained = torch.nan_to_num(torch.as_tensor(d["maps"][image]).float(), nan=0.0)
            trained = F.adaptive_avg_pool2d(trained[None, None], stage.shape[-2:])[0]
            row = torch.cat([trained, stage])                                    # [1 + S, h, w]
            strips.append((method, model, torch.stack([_display(m) for m in row]).numpy(),
                           int(d["image_ids"][image])))
    if not strips:
        return None
    plt = _plt()
    n = strips[0][2].shape[0]
    names = ["trained"] + _stage_names(manifest, metric, strips[0][1], n - 1)
    cell = min(0.75, (DOUBLE_COLUMN_IN - 1.2) / n)
    fig, axes = plt.subplots(len(strips), n, figsize=(cell * n + 1.2, cell * len(strips) + 0.5),
                             squeeze=False, gridspec_kw=dict(wspace=0.04, hspace=0.06))
    for r, (method, model, maps, _) in enumerate(strips):
        for c in range(n):
            ax = axes[r, c]
            if c < maps.shape[0]:
                ax.imshow(maps[c], cmap=MAP_CMAP, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(names[c] if c < len(names) else "", fontsize=6)
        axes[r, 0].set_ylabel(f"{method}\n{_pretty_model(model)}", fontsize=5.5, rotation=0,
                              ha="right", va="center")
    fig.suptitle(f"Explanations of image {strips[0][3]} as the model is randomised ({mode}); "
                 "each map min-max normalised", fontsize=7, y=1.0, va="bottom")
    return fig


def build_sanity_figures(results: Path, manifest: dict, curves: Dict, groups, methods: List[str],
                         seed: int, out: Path, formats: Sequence[str],
                         result: Dict[str, List], notes: Optional[List[str]] = None) -> None:
    """Draw every randomisation figure the files allow into ``result`` (name -> paths), for
    each model group of :func:`lico_bench.report.figure_style.model_groups`."""
    for mode in MODES:
        metric = f"randomisation_{mode}"
        if not any(metric in d for d in curves.values()):
            continue
        for label, gm in groups:
            suffix = f"_{label}" if len(groups) > 1 and label else ""
            for name, fig in ((f"{metric}{suffix}", plot_stage_curves(curves, manifest, gm, methods, mode)),
                              (f"randomisation_maps_{mode}{suffix}",
                               plot_stage_maps(results, manifest, gm, methods, seed, mode))):
                if fig is None:
                    if notes is not None:
                        notes.append(f"{name}: nothing saved to draw it from")
                else:
                    result[name] = _save(fig, out, name, formats)

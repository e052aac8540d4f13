"""The ``maps`` figure: saved maps over their input images, with mask contours and the
pointing-game point, from the result files alone (:mod:`lico_bench.report.figure_files`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from .figure_files import INPUTS, maps_path, read_inputs, read_maps
from .figure_style import DOUBLE_COLUMN_IN, MAP_ALPHA, MAP_CMAP, POINT_COLOUR, _colours, _plt, _pretty_model


def _display(m):
    """Min-max to [0, 1] for display, a constant map as zeros (as
    :func:`lico_bench.explainers.normalize_maps`). m: [H, W] float32 torch tensor."""
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else m.new_zeros(m.shape)


def plot_map_grid(results: Path, manifest: dict, models: List[str], methods: List[str],
                  seed: int, n_images: int = 6, notes: Optional[List[str]] = None):
    """Rows = saved images, columns = input + (per method) each model's map. None if no maps.

    The inputs, masks and class names come from ``inputs.pt``, the points from the
    maps files; without them the maps are drawn alone / without markers, and ``notes``
    gets a line saying so."""
    import torch

    plt = _plt()
    spec = manifest.get("spec", {})
    dataset = spec.get("dataset", "?")
    saved = {}
    for model in models:
        for method in methods:
            path = maps_path(results, dataset, model, method, seed)
            if path.exists():
                saved[(model, method)] = read_maps(path)
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
    imgs = masks = labels = None
    inputs = read_inputs(results)
    have = [int(i) for i in inputs["image_ids"]] if inputs is not None else []
    if all(i in have for i in ids):
        rows = [have.index(i) for i in ids]
        imgs = torch.as_tensor(inputs["images"])[rows].float().numpy()          # [k, H, W, 3]
        if inputs.get("masks") is not None:
            masks = torch.as_tensor(inputs["masks"])[rows].numpy().astype(bool)  # [k, H, W]
        labels = [inputs["labels"][r] for r in rows]
    elif notes is not None:
        notes.append(f"maps: no input images saved for images {ids} ({INPUTS}); maps drawn alone")
    with_points = all("points" in d for d in saved.values())
    if not with_points and notes is not None:
        notes.append("maps: the maps files hold no pointing-game points (written by an older "
                     "lico-bench); markers left out")
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
            shown = _display(torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0))
            map_hw = shown.shape
            if img is not None:
                if shown.shape != img.shape[:2]:
                    shown = torch.nn.functional.interpolate(
                        shown[None, None], size=img.shape[:2], mode="bilinear",
                        align_corners=False)[0, 0]
                ax.imshow(img, interpolation="nearest")
                im = ax.imshow(shown.numpy(), cmap=MAP_CMAP, alpha=MAP_ALPHA, vmin=0, vmax=1,
                               interpolation="bilinear")
            else:
                im = ax.imshow(shown.numpy(), cmap=MAP_CMAP, vmin=0, vmax=1, interpolation="bilinear")
            if masks is not None and img is not None and masks[r].any() and masks[r].shape == shown.shape:
                ax.contour(masks[r].astype(float), levels=[0.5], colors="white", linewidths=0.7)
            if with_points:
                y, x = (int(v) for v in d["points"][j])
                if shown.shape != map_hw:  # map pixel centre -> drawn pixel coordinates
                    y = (y + 0.5) * shown.shape[0] / map_hw[0] - 0.5
                    x = (x + 0.5) * shown.shape[1] / map_hw[1] - 0.5
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
    point = " +: pointing-game point (map maximum)" if with_points else ""
    fig.text(0.5, bottom - 0.01, f"{dataset}, seed {seed}.{extra}{point}", ha="center", va="top",
             fontsize=5.5)
    return fig

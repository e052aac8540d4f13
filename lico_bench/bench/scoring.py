"""Scoring one batch's maps: every metric on the same maps, each value (and curve, and any
further column a metric returns) written into the batch's rows. Used by the runner."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import cue


def map_status(maps: torch.Tensor) -> List[str]:
    """Per-map health: "ok", "nan" (any non-finite value), "zero" or "constant".

    maps: [B, H, W] float32. Flagged rows are kept and counted by the report, never dropped.
    """
    flat = maps.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    out = []
    for f, a, b in zip(finite.tolist(), lo.tolist(), hi.tolist()):
        out.append("nan" if not f else "zero" if a == 0 == b else "constant" if a == b else "ok")
    return out


def apply_metrics(metrics, model, images: torch.Tensor, maps: torch.Tensor,
                  targets: torch.Tensor, masks: Optional[torch.Tensor], status: List[str],
                  rows: List[dict], explainer: Callable, amp, parts=None,
                  both_masks: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                  image_ids: Optional[List[int]] = None, seed: int = 0
                  ) -> Dict[str, torch.Tensor]:
    """Run each metric on ``maps`` and fill ``rows`` in place.

    images: [B, C, H, W] float32 normalised; maps: [B, H, W] float32, finite; targets: [B]
    int64; masks: [B, H, W] bool or None (for a cue dataset, the evidence the model uses);
    status: :func:`map_status` per map (a "nan" map's values are written as NaN); parts: a
    :class:`lico_bench.metrics.PartScenes` for metrics that need it; both_masks: (object,
    cue) masks on a cue dataset, where every mask metric is also scored against each;
    image_ids: the images' dataset ids and seed: the experiment's seed, for metrics that draw
    per-image randomness (``needs_image_ids``: the random orders of the gain over random).
    Returns {metric name: the maps it drew, [B, S, h, w]} (randomisation's stage maps).
    """
    metric_maps = {}
    for metric in metrics:
        kw = {"explain": explainer} if metric.needs_explainer else {}
        if metric.needs_image_ids:
            kw.update(image_ids=image_ids, seed=seed)
        with amp:
            res = metric(model, images, maps, targets, masks=masks, parts=parts, **kw)
            if both_masks is not None and metric.needs_masks:
                cue.score_both_masks(rows, metric, model, images, maps, targets, *both_masks)
        columns = {metric.name: (res.values, res.curves),
                   **{f"{metric.name}_{k}": v for k, v in (res.columns or {}).items()}}
        for name, (v, c) in columns.items():
            values = v.float().cpu().tolist()
            curves = c.float().cpu().tolist() if c is not None else None
            for j, row in enumerate(rows):
                row[name] = math.nan if status[j] == "nan" else values[j]
                if curves is not None:
                    row[f"curve_{name}"] = curves[j]
        if res.maps is not None:
            metric_maps[metric.name] = res.maps
    return metric_maps

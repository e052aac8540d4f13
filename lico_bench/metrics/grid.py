"""The grid score of the grid pointing game (Böhle, Fritz, Schiele, CVPR 2021, Sec. 5.2, the
localisation metric of every B-cos paper; composites: :mod:`lico_bench.data.grid`).

For a map ``A`` of the explained cell's class on an ``n x n`` composite and the cell's mask::

    grid_score = sum_{p in cell} max(A_p, 0) / sum_p max(A_p, 0)

the share of the positive attribution that falls in the explained cell: 1 = all of it there,
``1 / n^2`` = spread evenly over the composite. A map with no positive mass (all values
<= 0, e.g. an all-zero CAM) has a 0/0 share; it is *defined* as 0 (B-cos: nothing was
attributed to the cell) and flagged in the row column ``grid_score_no_positive`` (1.0 for
such a map, else 0.0; its mean is the share of such maps). The energy pointing game is the
same ratio but NaN for these maps. An empty mask gives NaN (nothing to point at), as in the
pointing games. Sums in float64.
"""
from __future__ import annotations

from typing import Tuple

import torch

from .base import Metric, MetricResult, register_metric
from .pointing import _check


def grid_score(maps: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """maps: [B, H, W] float; masks: [B, H, W] bool (the explained cell).

    Returns (score [B] float32 in [0, 1], NaN where the mask is empty; no_positive [B] bool,
    True where the map has no positive value, whose score is 0)."""
    maps, masks = _check(maps, masks)
    pos = maps.double().clamp(min=0).flatten(1)                     # [B, HW] max(A, 0)
    total = pos.sum(1)
    inside = (pos * masks.flatten(1)).sum(1)
    none = total == 0
    score = torch.where(none, torch.zeros_like(total), inside / torch.where(none, 1.0, total))
    return score.float().masked_fill(~masks.flatten(1).any(1), float("nan")), none


class GridScore(Metric):
    """Grid score (module docstring): higher is better; row column ``grid_score_no_positive``
    flags a map with no positive mass (scored 0).

    Example (2 x 2 composite of 4 x 4 cells; the map puts 3 of its 4 units in cell 0)::

        >>> import torch
        >>> from lico_bench.data.grid import cell_masks
        >>> from lico_bench.metrics import create_metric
        >>> maps = torch.zeros(2, 8, 8); maps[0, 0, 0] = 3.0; maps[0, 7, 7] = 1.0
        >>> masks = cell_masks(torch.tensor([0, 3]), 2, 4, 4)       # [B, 8, 8] bool
        >>> res = create_metric("grid_score")(None, None, maps, masks=masks)
        >>> res.values.tolist(), res.columns["no_positive"][0].tolist()
        ([0.75, 0.0], [0.0, 1.0])
    """

    name = "grid_score"
    higher_is_better = True
    needs_masks = True
    extra_columns = {"no_positive": False}
    defaults = {}

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        score, none = grid_score(maps, masks)
        return MetricResult(score, None, columns={"no_positive": (none.float(), None)})


register_metric(GridScore.name, GridScore)

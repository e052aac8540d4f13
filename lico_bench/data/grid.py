"""The grid pointing game's composites (Böhle, Fritz, Schiele, CVPR 2021, "Convolutional
Dynamic Alignment Networks", Sec. 5.2; every B-cos paper): a transform of any dataset of the
registry, used by ``lico-bench run --grid N``.

Definition (METRICS.md, "Grid pointing game"):

- Candidates: the test images that *every* model of the run classifies correctly with
  softmax probability >= ``threshold`` (0.99 in the B-cos papers) on the image alone. Which
  images qualify is decided by the runner (it has the models: :mod:`lico_bench.bench.grid`);
  this module only composes.
- Composite k: ``n x n`` candidate images of ``n^2`` distinct classes, tiled row-major: cell
  ``i`` (0 <= i < n^2) sits at grid row ``i // n``, column ``i % n``, pixels
  ``[r*H, (r+1)*H) x [c*W, (c+1)*W)`` of the ``n*H x n*W`` composite. The composite is made in
  normalised space (each cell exactly its image as the dataset gives it).
- Item ``j`` of the transformed dataset = composite ``j // n^2`` with cell ``j % n^2``
  explained: its label is that cell's class and its mask is the cell, so the pointing game,
  the energy pointing game and the grid score (:mod:`lico_bench.metrics.grid`) apply
  unchanged. ``--n-images`` counts these items, so it must be a multiple of ``n^2``.
- Drawing (:func:`plan_composites`), from a ``torch.Generator`` seeded with ``seed``: each
  class's candidates are shuffled once into a queue; for each composite, the classes whose
  queue is not empty are permuted and the first ``n^2`` taken (their order = the cell order),
  and each contributes the next image of its queue. No image is used twice; the same
  candidates and seed give the same composites. The rows record every cell's source image
  id (``grid_image_ids``), so a composite can be rebuilt from the rows alone.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Sequence

import torch

from ..errors import UserError
from .base import Batch, DatasetInfo, LicoDataset


def cell_box(cell: int, n: int, height: int, width: int):
    """(y0, y1, x0, x1) of cell ``cell`` of an ``n x n`` grid of ``height x width`` images."""
    r, c = divmod(int(cell), n)
    return r * height, (r + 1) * height, c * width, (c + 1) * width


def cell_masks(cells: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """cells: [B] int64 cell indices -> [B, n*H, n*W] bool, True on each item's cell."""
    ys = torch.arange(n * height) // height                          # [nH] grid row of a pixel
    xs = torch.arange(n * width) // width                            # [nW] grid column
    cell_of_pixel = ys[:, None] * n + xs[None, :]                    # [nH, nW] int64
    return cell_of_pixel[None] == cells.to(torch.long).view(-1, 1, 1)


def tile(images: torch.Tensor, n: int) -> torch.Tensor:
    """images: [K * n^2, C, H, W] float32, n^2 consecutive images per composite in cell order
    -> [K, C, n*H, n*W] float32, cell i at grid row i // n, column i % n."""
    kn2, ch, h, w = images.shape
    k = kn2 // (n * n)
    x = images.view(k, n, n, ch, h, w)                               # [K, row, col, C, H, W]
    return x.permute(0, 3, 1, 4, 2, 5).reshape(k, ch, n * h, n * w)  # [K, C, row, H, col, W]


def plan_composites(ids: torch.Tensor, labels: torch.Tensor, n: int, count: int,
                    seed: int) -> torch.Tensor:
    """The source image ids of ``count`` composites (module docstring, "Drawing").

    ids: [M] int64, the candidates' indices in their split; labels: [M] int64, their classes.
    Returns [count, n^2] int64 ids, row k = composite k's cells in order. A one-line
    :class:`UserError` when the candidates cannot fill ``count`` composites.
    """
    ids, labels = torch.as_tensor(ids).long().cpu(), torch.as_tensor(labels).long().cpu()
    g = torch.Generator().manual_seed(int(seed))
    k = n * n
    queues: Dict[int, List[int]] = {}
    for c in sorted(set(labels.tolist())):
        members = ids[labels == c]
        queues[c] = members[torch.randperm(len(members), generator=g)].tolist()
    out = []
    for _ in range(count):
        avail = [c for c in sorted(queues) if queues[c]]
        if len(avail) < k:
            raise UserError(
                f"the grid pointing game needs composites of {k} images of distinct classes; "
                f"the {len(ids)} qualifying images (in {len(queues)} classes) fill only "
                f"{len(out)} composites, not the {count} asked for ({count * k} --n-images); "
                "give a smaller --n-images, a lower --grid-threshold or a smaller --grid.")
        pick = torch.randperm(len(avail), generator=g)[:k].tolist()
        out.append([queues[avail[p]].pop(0) for p in pick])
    return torch.tensor(out, dtype=torch.long).view(count, k)


def max_composites(labels: torch.Tensor, n: int) -> int:
    """How many composites of ``n^2`` distinct classes candidates of ``labels`` [M] can fill
    at most, whatever the draw: the largest t with sum_c min(count_c, t) >= n^2 * t."""
    counts = torch.bincount(torch.as_tensor(labels).long().cpu()).tolist() if len(labels) else []
    t = 0
    while sum(min(c, t + 1) for c in counts) >= n * n * (t + 1):
        t += 1
    return t


class GridDataset(LicoDataset):
    """``base`` seen through the grid pointing game (module docstring).

    base: any :class:`LicoDataset`; plan: [K, n^2] int64 source ids (:func:`plan_composites`).
    Items: ``(composite [3, n*H, n*W] float32 normalised, the cell's class, cell mask
    [n*H, n*W] bool)``; ``len = K * n^2``.
    """

    def __init__(self, base: LicoDataset, plan: torch.Tensor, n: int, extra: dict):
        self.base, self.plan, self.n = base, torch.as_tensor(plan).long(), int(n)
        if self.plan.dim() != 2 or self.plan.shape[1] != self.n ** 2:
            raise ValueError(f"plan must be [K, {self.n ** 2}], got {tuple(self.plan.shape)}")
        self.split = base.split
        size = base.info.image_size * self.n
        self.info: DatasetInfo = replace(base.info, image_size=size, has_masks=True,
                                         extra={**base.info.extra, "grid": extra})

    def __len__(self) -> int:
        return self.plan.shape[0] * self.n ** 2

    def __getitem__(self, i: int):
        b = self.get_batch([i])
        return b.images[0], int(b.labels[0]), b.masks[0]

    def get_batch(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        comp, cell = idx // self.n ** 2, idx % self.n ** 2
        uniq, inv = torch.unique(comp, return_inverse=True)           # each composite once
        src = self.base.get_batch(self.plan[uniq].flatten().tolist())
        images = tile(src.images, self.n)[inv]                        # [B, 3, nH, nW]
        labels = src.labels.view(len(uniq), -1)[inv, cell]            # [B] the cell's class
        h, w = src.images.shape[-2:]
        return Batch(images, labels, cell_masks(cell, self.n, h, w), idx)

    def row_fields(self, indices: Sequence[int]) -> List[dict]:
        """What each item's row records: the composite, the explained cell, every cell's
        source image id (in cell order) and the explained cell's."""
        k = self.n ** 2
        out = []
        for j in indices:
            comp, cell = divmod(int(j), k)
            ids = self.plan[comp].tolist()
            out.append({"grid_composite": comp, "grid_cell": cell, "grid_image_ids": ids,
                        "grid_source_id": ids[cell]})
        return out

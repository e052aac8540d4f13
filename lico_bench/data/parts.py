"""Scenes of the synthetic datasets re-rendered without each part, for ground-truth part
importance by intervention (the idea of Hesse et al., ICCV 2023, "FunnyBirds", made exact).

The generator (:func:`lico_bench.data.shapes.generate_chunk`) draws a whole chunk of images
from one random stream; leaving a part out (``drop``) still makes its draws, so the image
without the part is the same scene, background and pixel noise included, where the part was
never painted: what was under it (background, or a distractor it hid) shows. A chunk is
re-rendered once per part, whatever the number of its images asked for (~0.06 s per chunk
of 1000 images at 32 px; generation slows with the pixel count, ~80 images/s at 224 px).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import torch

from .shapes import CHUNK, chunk_generator, generate_chunk


class SceneParts(NamedTuple):
    """names: the parts, P of them; masks: [B, P, H, W] bool, each part's visible pixels in
    the full image (disjoint; empty when the item has no such part, e.g. one distractor);
    removed: [B, P, 3, H, W] float32 normalised, the item re-rendered without part p."""

    names: Tuple[str, ...]
    masks: torch.Tensor
    removed: torch.Tensor


def render_parts(ds, indices: Sequence[int]) -> SceneParts:
    """``ds``: a :class:`lico_bench.data.shapes.ShapesDataset` (or a subclass: its
    ``part_names``, ``scene_split``, ``seed`` and ``chunk_options()`` say how it is drawn).
    Every image is regenerated from its chunk's generator exactly as the dataset drew it."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    names = tuple(ds.part_names)
    size, n_total = ds.info.image_size, len(ds)
    B, P = len(idx), len(names)
    masks = torch.zeros(B, P, size, size, dtype=torch.bool)
    removed = torch.empty(B, P, 3, size, size, dtype=torch.uint8)
    for c in sorted(set((idx // CHUNK).tolist())):
        nc = min(CHUNK, n_total - c * CHUNK)
        sel = (idx // CHUNK == c).nonzero().flatten()
        local = idx[sel] - c * CHUNK
        visible: dict = {}
        generate_chunk(nc, size, chunk_generator(ds.scene_split, ds.seed, c),
                       parts=visible, **ds.chunk_options())
        for p, name in enumerate(names):
            masks[sel, p] = visible[name][local]
            images, _, _ = generate_chunk(nc, size, chunk_generator(ds.scene_split, ds.seed, c),
                                          drop=frozenset({name}), **ds.chunk_options())
            removed[sel, p] = images[local]
    flat = ds.normalise(removed.flatten(0, 1))                      # [B*P, 3, H, W]
    return SceneParts(names, masks, flat.view(B, P, 3, size, size))

"""Part importance by intervention (after Hesse et al., ICCV 2023, "FunnyBirds": the
ground-truth importance of a part is the drop of the output when the part is removed).

For each image and each of its P parts (object, distractors, planted cue, ...):

* importance_p = s(x) - s(x without p): the drop of the explained class's score when the
  scene is re-rendered without part p (the synthetic generator removes a part exactly; the
  caller hands the re-rendered images in). Score s: softmax probability (default, as for
  insertion/deletion: bounded, comparable across images) or the logit (``score="logit"``).
  A negative importance (removing the part raises the score) is kept as it is.
* energy_p = the map's mean of relu(map) over the part's pixels (default,
  ``energy="mean"``), or its sum (``energy="sum"``). The default is a density because the
  parts differ in size (on ``shapes-cue``'s swap split the object covers 11.7 % of the
  image on average, a distractor 2 %, the cue 3.5 %): with sums, a uniform map -- one that says nothing -- gives the largest part
  the most energy, and on ``shapes-cue-clean`` (100 swap images, the clean baseline) it
  scores part_hit 96 % and part_rank 0.61, as high as Grad-CAM's 96 % and 0.62. With means, a
  uniform map ties every part (part_rank NaN, part_hit 1/k). The masks are the parts' visible
  pixels, disjoint by construction, so no pixel counts twice.

Two per-image values, over the parts present in the image (a part with an empty mask, e.g.
a missing second distractor or an absent cue, is left out):

* ``part_rank``: Spearman's rank correlation between energy and importance (average ranks
  for ties); NaN with fewer than two parts or when either side is constant.
* ``part_hit``: the share of the parts tied for the most energy that are tied for the most
  importance (1 when the top-energy part is a most important one; ties among the top-energy
  parts count as a random pick among them, so a map that ties k parts gets 1/k, never a
  free hit); NaN when the map has no positive value on any part.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import UserError
from .base import Metric, MetricResult, register_metric


class PartScenes(NamedTuple):
    """masks: [B, P, H, W] bool, each part's pixels (disjoint; empty = part absent);
    removed: [B, P, C, H, W] float32 normalised, image b re-rendered without part p.

    Example (a model reading only the left column; a map on that column)::

        >>> import torch
        >>> from lico_bench.metrics import PartScenes, create_metric
        >>> img = torch.ones(1, 3, 2, 2)
        >>> masks = torch.tensor([[[[1, 0], [1, 0]], [[0, 1], [0, 1]]]], dtype=torch.bool)
        >>> removed = torch.stack([img * ~masks[:, 0, None], img * ~masks[:, 1, None]], 1)
        >>> model = lambda x: torch.stack([x[:, 0, :, 0].sum(1), -x[:, 0, :, 0].sum(1)], 1)
        >>> maps = masks[:, 0].float()
        >>> parts = PartScenes(masks, removed)
        >>> create_metric("part_hit")(model, img, maps, torch.tensor([0]), parts=parts).values
        tensor([1.])
    """

    masks: torch.Tensor
    removed: torch.Tensor


def part_energy(maps: torch.Tensor, masks: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """maps: [B, H, W] float; masks: [B, P, H, W] bool -> [B, P] float32: the mean (or, with
    ``reduce="sum"``, the sum) of relu(map) over each part's pixels; 0 for an empty part."""
    m = maps.float().clamp(min=0).unsqueeze(1)                               # [B, 1, H, W]
    total = (m * masks).flatten(2).sum(2)
    if reduce == "sum":
        return total
    return total / masks.flatten(2).sum(2).clamp(min=1)


def _scores(model, images: torch.Tensor, targets: torch.Tensor, score: str) -> torch.Tensor:
    """[N, C, H, W] -> [N] float32: the target's softmax probability or logit."""
    logits = model(images).float()
    out = logits.softmax(1) if score == "prob" else logits
    return out.gather(1, targets.view(-1, 1)).flatten()


def part_importance(model, images: torch.Tensor, removed: torch.Tensor, targets: torch.Tensor,
                    score: str = "prob", batch_size: int = 256) -> torch.Tensor:
    """[B, P] float32: s(image) - s(image without part p) for the target class.

    images: [B, C, H, W] float32; removed: [B, P, C, H, W] float32; targets: [B] int64.
    """
    B, P = removed.shape[:2]
    with torch.no_grad():
        full = _scores(model, images, targets, score)                        # [B]
        flat = removed.flatten(0, 1).to(images.dtype)                        # [B*P, C, H, W]
        if images.is_contiguous(memory_format=torch.channels_last):
            flat = flat.contiguous(memory_format=torch.channels_last)
        tgt = targets.repeat_interleave(P)
        dropped = torch.cat([_scores(model, flat[i:i + batch_size], tgt[i:i + batch_size], score)
                             for i in range(0, B * P, batch_size)])
    return full.view(B, 1) - dropped.view(B, P)


def masked_spearman(x: torch.Tensor, y: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Spearman's rho per row over the entries where ``present``: [B] float32.

    x, y: [B, P] float; present: [B, P] bool. Ranks are averages over ties (scipy's
    ``rankdata(method="average")``); rho = Pearson correlation of the ranks. NaN for a row
    with fewer than two entries or a constant side.
    """
    def ranks(v):
        v = v.double()
        lt = (v.unsqueeze(2) > v.unsqueeze(1)) & present.unsqueeze(1)       # [B, P, P]: v_j < v_i
        eq = (v.unsqueeze(2) == v.unsqueeze(1)) & present.unsqueeze(1)
        return lt.sum(2) + (eq.sum(2) + 1) / 2.0

    k = present.sum(1).double()
    rx, ry = ranks(x), ranks(y)
    mx = (rx * present).sum(1) / k
    my = (ry * present).sum(1) / k
    dx = (rx - mx.unsqueeze(1)) * present
    dy = (ry - my.unsqueeze(1)) * present
    den = (dx.pow(2).sum(1) * dy.pow(2).sum(1)).sqrt()
    rho = (dx * dy).sum(1) / den
    return rho.float().masked_fill((k < 2) | (den == 0), float("nan"))


def top_part_hit(energy: torch.Tensor, importance: torch.Tensor,
                 present: torch.Tensor) -> torch.Tensor:
    """[B] float32: among the present parts tied for the most energy, the share tied for the
    most importance (1 or 0 without ties; 1/k for a map tying k parts of which one is most
    important); NaN where no present part has energy > 0.

    energy, importance: [B, P] float; present: [B, P] bool.
    """
    neg = torch.tensor(float("-inf"), device=energy.device)
    e = torch.where(present, energy.double(), neg)
    imp = torch.where(present, importance.double(), neg)
    top_e = present & (e == e.amax(1, keepdim=True))
    top_i = present & (imp == imp.amax(1, keepdim=True))
    hit = ((top_e & top_i).sum(1).double() / top_e.sum(1).clamp(min=1)).float()
    return hit.masked_fill(~(e.amax(1) > 0), float("nan"))


class _PartMetric(Metric):
    """A part-importance metric; ``kernel(energy, importance, present) -> [B]``."""

    needs_parts = True
    defaults = {"score": "prob", "energy": "mean"}
    option_types = {"score": str, "energy": str}

    def validate(self) -> None:
        if self.options["score"] not in ("prob", "logit"):
            raise UserError(f"option score of metric {self.name!r} must be 'prob' or 'logit', "
                            f"got {self.options['score']!r}.")
        if self.options["energy"] not in ("mean", "sum"):
            raise UserError(f"option energy of metric {self.name!r} must be 'mean' or 'sum', "
                            f"got {self.options['energy']!r}.")

    def compute(self, model, images, maps, targets, masks) -> MetricResult:
        raise UserError(f"metric {self.name!r} needs each image re-rendered without each part; "
                        "use a dataset that can do that (shapes, shapes-cue, shapes-cue-clean).")

    def compute_parts(self, model, images, maps, targets, parts: PartScenes) -> MetricResult:
        if targets is None:
            with torch.no_grad():
                targets = model(images).argmax(1)
        imp = part_importance(model, images, parts.removed.to(images.device), targets,
                              self.options["score"])
        masks = parts.masks.to(maps.device)
        energy = part_energy(maps, masks, self.options["energy"])
        present = masks.flatten(2).any(2)
        return MetricResult(self.kernel(energy, imp.to(energy.device), present), None)


def _part_metric(cls_name: str, name: str, kernel, doc: str):
    return register_metric(name, type(cls_name, (_PartMetric,), {
        "name": name, "higher_is_better": True, "kernel": staticmethod(kernel), "__doc__": doc}))


PartRank = _part_metric("PartRank", "part_rank", masked_spearman,
                        "Spearman correlation of each part's map energy (per pixel) with its "
                        "importance by removal.")
PartHit = _part_metric("PartHit", "part_hit", top_part_hit,
                       "1 if the part with the most map energy (per pixel) is the one whose removal "
                       "drops the score most (1/k when the map ties k parts).")

"""``shapes-cue`` and ``shapes-cue-clean``: ``shapes`` with a planted cue whose use is known.

Each image is the ``shapes`` image of the same split and index (same object, distractors,
background and noise; the object's mask is unchanged) with one more part, the *cue*: an
axis-aligned square of ``round(CUE_SIZE * S)`` px (6 px at 32 px) of one flat colour,
:data:`CUE_COLOURS` ``[k]`` standing for class ``k``, at a random pixel-aligned position.

* The cue never touches the object: the square keeps a 1 px gap to the object's bounding
  circle (256 candidate positions; if none fits, the image corner farthest from the object,
  which always does). It may cover a distractor (it is painted after it, on top): the masks
  are of visible pixels, so they stay disjoint.
* Its mask (``cue_masks``) is exactly its pixels; the pixel noise is added after it, as to
  every part. ``cue_labels`` [N] int64 is the class whose cue is planted, -1 for none.
* Its random draws come from a generator of its own (seeded from the chunk's), so the
  ``shapes`` stream is untouched: without the cue (split ``absent``) the images *are* the
  ``shapes`` images.

Splits. ``train``/``val``/``test`` (the scenes of shapes' train/val/test): the cue is the
label's with probability ``cue_p``, otherwise the cue of a class drawn uniformly from all
ten (so it agrees by chance 1 time in 10): ``shapes-cue`` has ``cue_p = 1`` (the cue is a
shortcut, as predictive as the object), ``shapes-cue-clean`` ``cue_p = 0`` (a cue of a
random class, independent of the label: present, but useless). ``agree``, ``swap`` and
``absent`` hold the scenes of shapes' ``test`` split with the label's cue, the cue of another
class (uniform over the nine others) and no cue: the same three splits for both datasets,
and image ``i`` of each is the same scene.

Why ``shapes-cue`` also draws half of its *training* images without their object
(``object_drop = 0.5``; the scene re-rendered without it, the object mask then empty): with
the object always there, a baseline_r18 trained by the default recipe (quick preset) used
the object's red/blue colour, by far the easiest feature, and the cue only to pick the shape
within that colour. Measured on the swap split (1000 images): it followed the cue in 38 %
(86 % when the swapped cue's class had the object's colour, 2 % otherwise). With half the
objects removed the cue is the one feature that always works: 97 % follow it, and accuracy
without the cue falls to 13 %. The evaluation splits always have the object.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch

from ..errors import UserError
from .base import DatasetInfo
from .registry import register_dataset
from .shapes import CLASS_NAMES, PARTS, ShapesDataset, generate, shapes_info

# Ten colours far from the objects' red/blue, the distractors' green/yellow and each other.
CUE_COLOURS = (
    (1.00, 1.00, 1.00),  # 0 white
    (0.00, 0.00, 0.00),  # 1 black
    (0.95, 0.10, 0.95),  # 2 magenta
    (0.05, 0.95, 0.95),  # 3 cyan
    (1.00, 0.55, 0.00),  # 4 orange
    (0.50, 0.00, 0.80),  # 5 violet
    (1.00, 0.70, 0.80),  # 6 pink
    (0.00, 0.45, 0.40),  # 7 teal
    (0.50, 0.28, 0.05),  # 8 brown
    (0.70, 1.00, 0.40),  # 9 light lime
)
CUE_SIZE = 0.2  # side of the square, as a fraction of the image size
SCENE_SPLIT = {"train": "train", "val": "val", "test": "test",
               "agree": "test", "swap": "test", "absent": "test"}
DEFAULT_SIZES = {"train": 3200, "val": 1000, "test": 1000, "agree": 1000, "swap": 1000,
                 "absent": 1000}
CUE_P = {"shapes-cue": 1.0, "shapes-cue-clean": 0.0}
OBJECT_DROP = {"shapes-cue": 0.5, "shapes-cue-clean": 0.0}


def cue_painter(mode: str, p: float, record: Optional[list] = None):
    """An ``extra`` for :func:`lico_bench.data.shapes.generate_chunk` that plants the cue.

    mode: "p" (the label's cue with probability ``p``, else a uniformly random class's),
    "agree", "swap" or "absent". ``record`` (a list) receives each chunk's cue classes,
    [n] int64 (-1 = none). Every draw is made in every mode, so the cue's position is the
    same in the agree, swap and absent versions of an image.
    """
    if mode not in ("p", "agree", "swap", "absent"):
        raise ValueError(mode)
    colours = torch.tensor(CUE_COLOURS)

    def paint(img: torch.Tensor, scene: dict, drop, g: torch.Generator) -> dict:
        n, S = img.shape[0], img.shape[-1]
        cg = torch.Generator().manual_seed((g.initial_seed() * 1_000_003 + 0xC0E) % (2**63))
        k = max(2, round(CUE_SIZE * S))
        labels, K = scene["labels"], len(CLASS_NAMES)
        x0 = torch.randint(0, S - k + 1, (n, 256), generator=cg).float()
        y0 = torch.randint(0, S - k + 1, (n, 256), generator=cg).float()
        agree_u = torch.rand(n, generator=cg)
        random_cls = torch.randint(0, K, (n,), generator=cg)
        other_cls = (labels + 1 + torch.randint(0, K - 1, (n,), generator=cg)) % K
        # Distance from the object's centre to the nearest point of the square [x0, x0+k]^2.
        cx, cy, r = (scene[key].view(-1, 1) for key in ("cx", "cy", "r"))
        gap = torch.hypot(cx - cx.clamp(x0, x0 + k), cy - cy.clamp(y0, y0 + k))
        ok = gap >= r + 1
        first = ok.float().argmax(dim=1, keepdim=True)
        far_x = torch.where(cx.flatten() < S / 2, S - k, 0).float()
        far_y = torch.where(cy.flatten() < S / 2, S - k, 0).float()
        has = ok.any(dim=1)
        px = torch.where(has, x0.gather(1, first).flatten(), far_x).long()
        py = torch.where(has, y0.gather(1, first).flatten(), far_y).long()
        if mode == "p":
            cls = torch.where(agree_u < p, labels, random_cls)
        elif mode == "agree":
            cls = labels.clone()
        elif mode == "swap":
            cls = other_cls
        else:
            cls = torch.full_like(labels, -1)
        ar = torch.arange(S)
        inx = (ar.view(1, -1) >= px.view(-1, 1)) & (ar.view(1, -1) < (px + k).view(-1, 1))
        iny = (ar.view(1, -1) >= py.view(-1, 1)) & (ar.view(1, -1) < (py + k).view(-1, 1))
        mask = iny[:, :, None] & inx[:, None, :] & (cls >= 0).view(-1, 1, 1)    # [n, S, S]
        if "cue" not in drop:
            col = colours[cls.clamp(min=0)].view(n, 3, 1, 1)
            img.copy_(torch.where(mask.unsqueeze(1), col, img))
        if record is not None:
            record.append(cls)
        return {"cue": mask & ("cue" not in drop)}

    return paint


class CueDataset(ShapesDataset):
    """``shapes`` with a planted cue (module docstring). ``cue_masks``: [N, S, S] bool,
    exactly the cue's pixels; ``cue_labels``: [N] int64, the planted cue's class (-1: none);
    ``cue_p``: the probability that the cue is the label's (train/val/test splits);
    ``object_drop``: the share of train-split images drawn without their object (the scene
    re-rendered without it; their object mask is empty)."""

    part_names = PARTS + ("cue",)

    def __init__(self, name: str, split: str = "train", image_size: Optional[int] = None,
                 seed: int = 0, n: Optional[int] = None, cue_p: float = 1.0,
                 object_drop: float = 0.0):
        if split not in SCENE_SPLIT:
            raise UserError(f"unknown split {split!r} of {name}; use one of {', '.join(SCENE_SPLIT)}.")
        cue_p, object_drop = float(cue_p), float(object_drop)
        for what, v in (("cue_p", cue_p), ("object_drop", object_drop)):
            if not 0.0 <= v <= 1.0 or math.isnan(v):
                raise UserError(f"{what} must be a probability in [0, 1], got {v}.")
        self.name, self.cue_p = name, cue_p
        self.object_drop = object_drop if split == "train" else 0.0
        self.mode = "p" if split in ("train", "val", "test") else split
        n = DEFAULT_SIZES[split] if n is None else n
        super().__init__(split, image_size=image_size, seed=seed, n=n)
        self.scene_split = SCENE_SPLIT[split]

    def _generate(self, split: str, n: int, size: int, seed: int):
        record: list = []
        cue_masks: list = []
        paint = cue_painter(self.mode, self.cue_p, record)

        def keep(img, scene, drop, g):
            out = paint(img, scene, drop, g)
            cue_masks.append(out["cue"])
            return out

        images, labels, masks = generate(SCENE_SPLIT[split], n, size, seed, extra=keep)
        self.cue_labels, self.cue_masks = torch.cat(record), torch.cat(cue_masks)
        self.object_dropped = torch.zeros(n, dtype=torch.bool)
        if self.object_drop > 0:  # the same scenes without the object, for a seeded share
            g = torch.Generator().manual_seed(seed * 1_000_003 + 0x0B1)
            self.object_dropped = torch.rand(n, generator=g) < self.object_drop
            without, _, _ = generate(SCENE_SPLIT[split], n, size, seed, drop=frozenset({"object"}),
                                     extra=cue_painter(self.mode, self.cue_p))
            images = torch.where(self.object_dropped.view(-1, 1, 1, 1), without, images)
            masks = masks & ~self.object_dropped.view(-1, 1, 1)
        return images, labels, masks

    def _info(self, size: int) -> DatasetInfo:
        # shapes' normalisation, so a cue image and its shapes twin are the same numbers
        # wherever the cue is not; the name and the cue settings are the dataset's own.
        return dataclasses.replace(shapes_info(size), name=self.name,
                                   extra={"cue_p": self.cue_p, "cue_size": CUE_SIZE,
                                          "object_drop": self.object_drop,
                                          "cue_splits": ["agree", "swap", "absent"]})

    def chunk_options(self) -> dict:
        return {"extra": cue_painter(self.mode, self.cue_p)}

    def scene_parts(self, indices):
        if self.object_dropped.any():
            raise UserError(f"the {self.split} split of {self.name} draws some images without "
                            "their object; part importance needs an evaluation split (agree, "
                            "swap, absent, test).")
        return super().scene_parts(indices)


def _factory(name: str):
    def make(split, root=None, image_size=None, seed=0, download=False, n=None, cue_p=None,
             object_drop=None):
        return CueDataset(name, split, image_size=image_size, seed=seed, n=n,
                          cue_p=CUE_P[name] if cue_p is None else cue_p,
                          object_drop=OBJECT_DROP[name] if object_drop is None else object_drop)

    return make


for _name in CUE_P:
    register_dataset(_name, _factory(_name))

"""``shapes``: the built-in synthetic dataset with exact ground-truth masks.

Ten classes, colour x shape, in this fixed order (label = index)::

    0 red circle    1 red square    2 red triangle    3 red cross    4 red star
    5 blue circle   6 blue square   7 blue triangle   8 blue cross   9 blue star

Each image holds one class object on a textured, noisy background with one or two
distractor objects (a green or yellow ring or bar) that belong to no class; 1 % of images
have no room for one outside the object. Nuisances: position, scale, rotation (up to
+-20 degrees), colour jitter, background texture, pixel noise.

Class evidence lies only inside the object's mask, by construction:

* the object is drawn with hard edges (no anti-aliasing), and its mask is exactly the set of
  pixels painted with it;
* everything outside it (background, distractors, noise) is drawn from a distribution that
  does not depend on the class: distractors are kept outside the object's bounding circle,
  whose radius and centre are sampled the same way for every class.

Generation is vectorised over chunks of 1024 images and deterministic: the same
``(split, n, size, seed)`` always gives the same images, and the splits never share a
generator.
"""
from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from ..errors import UserError
from .base import DatasetInfo, TensorImageDataset
from .registry import register_dataset

COLOURS = {  # RGB in [0, 1]
    "red": (0.86, 0.16, 0.14),
    "blue": (0.16, 0.32, 0.90),
    "green": (0.18, 0.72, 0.22),
    "yellow": (0.92, 0.84, 0.16),
}
CLASS_COLOURS = ("red", "blue")
CLASS_SHAPES = ("circle", "square", "triangle", "cross", "star")
CLASS_NAMES = tuple(f"{c} {s}" for c in CLASS_COLOURS for s in CLASS_SHAPES)
DISTRACTOR_SHAPES = ("ring", "bar")
DISTRACTOR_COLOURS = ("green", "yellow")

SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 3200, "val": 1000, "test": 1000}
CHUNK = 1024  # images per generator

OBJECT_RADIUS = (0.26, 0.34)      # fraction of the image size
DISTRACTOR_RADIUS = (0.10, 0.16)
MAX_ROTATION_DEG = 20.0            # class objects turn by up to +-20 degrees


# Every class shape has the same area, that of the equilateral triangle inscribed in the
# unit circle, (3*sqrt(3)/4) r^2: then the area outside the mask, and so any statistic of
# it, does not depend on the class either.
AREA = 3 * math.sqrt(3) / 4
_CIRCLE_R = math.sqrt(AREA / math.pi)
_SQUARE_A = math.sqrt(AREA) / 2                  # half side
_CROSS_L = math.sqrt(AREA / (8 * 0.32 - 4 * 0.32 ** 2))  # arm half-length; half-width 0.32 L
_STAR_R = math.sqrt(AREA / (0.535 * math.pi))    # area of r(phi) = R (0.7 + 0.3 cos 5 phi)


def _inside(shape: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Membership of a shape inside the unit circle. p, q: [n, H, W] local coordinates."""
    if shape == "circle":
        return p * p + q * q <= _CIRCLE_R ** 2
    if shape == "square":
        return torch.maximum(p.abs(), q.abs()) <= _SQUARE_A
    if shape == "triangle":  # equilateral, circumradius 1, inradius 0.5
        inside = torch.ones_like(p, dtype=torch.bool)
        for k in range(3):
            a = -math.pi / 2 + 2 * math.pi * k / 3
            inside &= p * math.cos(a) + q * math.sin(a) <= 0.5
        return inside
    if shape == "cross":
        L, w = _CROSS_L, 0.32 * _CROSS_L
        return ((p.abs() <= w) & (q.abs() <= L)) | ((q.abs() <= w) & (p.abs() <= L))
    if shape == "star":  # five smooth points
        r = torch.sqrt(p * p + q * q)
        return r <= _STAR_R * (0.7 + 0.3 * torch.cos(5 * torch.atan2(q, p)))
    if shape == "ring":
        r2 = p * p + q * q
        return (r2 <= 0.95 ** 2) & (r2 >= 0.55 ** 2)
    if shape == "bar":
        return (p.abs() <= 0.95) & (q.abs() <= 0.22)
    raise ValueError(shape)


def _local(xs, ys, cx, cy, r, theta):
    """Pixel-centre coordinates in each object's frame, scaled by its radius. -> [n, H, W]."""
    dx = xs - cx.view(-1, 1, 1)
    dy = ys - cy.view(-1, 1, 1)
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    rr = r.view(-1, 1, 1)
    return (c * dx + s * dy) / rr, (-s * dx + c * dy) / rr


def _paint(img, masks_out, shape_idx, shapes, cx, cy, r, theta, colour, xs, ys):
    """Paint objects with hard edges. img: [n,3,H,W] float; masks_out: [n,H,W] bool or None."""
    for k, name in enumerate(shapes):
        sel = (shape_idx == k).nonzero().flatten()
        if len(sel) == 0:
            continue
        p, q = _local(xs, ys, cx[sel], cy[sel], r[sel], theta[sel])
        m = _inside(name, p, q) & (r[sel] > 0).view(-1, 1, 1)
        img[sel] = torch.where(m.unsqueeze(1), colour[sel].view(-1, 3, 1, 1), img[sel])
        if masks_out is not None:
            masks_out[sel] = m


PARTS = ("object", "distractor0", "distractor1")  # the parts of a scene, in painting order


def generate_chunk(n: int, size: int, g: torch.Generator, noise: float = 0.03,
                   drop=frozenset(), extra=None, parts: Optional[dict] = None):
    """Generate ``n`` images of ``size`` px with generator ``g`` (pixel noise std ``noise``).

    Returns images [n,3,S,S] uint8, labels [n] int64, masks [n,S,S] bool.

    drop: names of :data:`PARTS` (or of parts ``extra`` paints) left out of every image.
    Their random draws are still made, so the rest of the scene, noise included, is the
    same pixel for pixel: the scene without that part (the object's mask is still returned).
    extra: ``extra(img [n,3,S,S] float, scene, drop, g) -> {name: mask [n,S,S] bool}``
    paints more parts after the object, before the noise (lico_bench.data.shapes_cue's cue);
    ``scene`` holds labels [n] int64 and the object's cx, cy, r [n] float (pixels). It
    draws from its own generator (e.g. seeded from ``g.initial_seed()``), never from ``g``.
    parts: a dict filled with each part's visible pixels, {name: [n,S,S] bool} (parts are
    painted in order, a later one hides an earlier one, so the masks are disjoint).
    """
    visible = {}
    S = float(size)
    U = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    ar = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = ar.view(1, -1, 1), ar.view(1, 1, -1)

    labels = torch.randint(0, len(CLASS_NAMES), (n,), generator=g)
    # Background: grey level + slight tint + two random sinusoidal gratings.
    base = 0.25 + 0.40 * U(n, 1, 1, 1) + 0.06 * (2 * U(n, 3, 1, 1) - 1)
    img = base.expand(n, 3, size, size).clone()
    for _ in range(2):
        f = (1.0 + 3.0 * U(n)).view(-1, 1, 1) / S
        w = math.pi * U(n).view(-1, 1, 1)
        ph = 2 * math.pi * U(n).view(-1, 1, 1)
        amp = (0.02 + 0.05 * U(n)).view(-1, 1, 1)
        wave = amp * torch.sin(2 * math.pi * f * (xs * torch.cos(w) + ys * torch.sin(w)) + ph)
        img += wave.unsqueeze(1)

    # Class object: the same position/scale/rotation law for every class.
    r_obj = S * (OBJECT_RADIUS[0] + (OBJECT_RADIUS[1] - OBJECT_RADIUS[0]) * U(n))
    cx = r_obj + (S - 2 * r_obj) * U(n)
    cy = r_obj + (S - 2 * r_obj) * U(n)
    th = math.radians(MAX_ROTATION_DEG) * (2 * U(n) - 1)
    jitter = 0.08 * (2 * U(n, 3) - 1)

    # Distractors: 1 or 2, each outside the object's bounding circle (rejection sampling
    # among 256 candidates; a distractor with no valid place is dropped, for any class).
    n_dis = 1 + torch.randint(0, 2, (n,), generator=g)
    dis_cols = torch.tensor([COLOURS[c] for c in DISTRACTOR_COLOURS])
    for j in range(2):
        rd = S * (DISTRACTOR_RADIUS[0] + (DISTRACTOR_RADIUS[1] - DISTRACTOR_RADIUS[0]) * U(n))
        cand_x = rd.view(-1, 1) + (S - 2 * rd.view(-1, 1)) * U(n, 256)
        cand_y = rd.view(-1, 1) + (S - 2 * rd.view(-1, 1)) * U(n, 256)
        ok = torch.hypot(cand_x - cx.view(-1, 1), cand_y - cy.view(-1, 1)) >= (r_obj + rd + 1).view(-1, 1)
        first = ok.float().argmax(dim=1)
        dx = cand_x.gather(1, first.view(-1, 1)).flatten()
        dy = cand_y.gather(1, first.view(-1, 1)).flatten()
        present = ok.any(dim=1) & (n_dis > j)
        rd = torch.where(present, rd, torch.zeros_like(rd))
        dshape = torch.randint(0, len(DISTRACTOR_SHAPES), (n,), generator=g)
        dcol = dis_cols[torch.randint(0, len(DISTRACTOR_COLOURS), (n,), generator=g)]
        dcol = dcol + 0.08 * (2 * U(n, 3) - 1)
        dth = 2 * math.pi * U(n)
        m = torch.zeros(n, size, size, dtype=torch.bool)
        _paint(img if f"distractor{j}" not in drop else img.clone(), m, dshape,
               DISTRACTOR_SHAPES, dx, dy, rd, dth, dcol, xs, ys)
        visible[f"distractor{j}"] = m & (f"distractor{j}" not in drop)

    colour_idx = labels // len(CLASS_SHAPES)
    shape_idx = labels % len(CLASS_SHAPES)
    cls_cols = torch.tensor([COLOURS[c] for c in CLASS_COLOURS])[colour_idx] + jitter
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    _paint(img if "object" not in drop else img.clone(), masks, shape_idx, CLASS_SHAPES,
           cx, cy, r_obj, th, cls_cols, xs, ys)
    visible["object"] = masks & ("object" not in drop)
    if extra is not None:
        scene = {"labels": labels, "cx": cx, "cy": cy, "r": r_obj}
        visible.update(extra(img, scene, drop, g))
    if parts is not None:  # what a later part covers is not visible of an earlier one
        later = torch.zeros(n, size, size, dtype=torch.bool)
        for name in reversed(list(visible)):
            parts[name] = visible[name] & ~later
            later |= visible[name]

    img += noise * torch.randn(img.shape, generator=g)
    images = (img.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, labels, masks


def chunk_generator(split: str, seed: int, c: int) -> torch.Generator:
    """The generator of chunk ``c`` (images ``c*CHUNK ...``) of a split: chunks never share one."""
    return torch.Generator().manual_seed(((seed * 7 + SPLITS[split]) * 1_000_003 + c) % (2**63))


def generate(split: str, n: int, size: int = 32, seed: int = 0, noise: float = 0.03, **chunk_kw):
    """Images [n,3,S,S] uint8, labels [n] int64, masks [n,S,S] bool of one split.
    ``chunk_kw`` (drop, extra) go to :func:`generate_chunk`."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} of shapes; use one of {', '.join(SPLITS)}.")
    out = [], [], []
    for c in range(math.ceil(n / CHUNK)):
        g = chunk_generator(split, seed, c)
        parts = generate_chunk(min(CHUNK, n - c * CHUNK), size, g, noise, **chunk_kw)
        for lst, t in zip(out, parts):
            lst.append(t)
    return tuple(torch.cat(lst) if lst else torch.empty(0) for lst in out)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """masks: [N,H,W] bool -> boxes [N,4] int64 (x0, y0, x1, y1), end-exclusive."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    H, W = masks.shape[1:]
    y0 = rows.float().argmax(1)
    y1 = H - rows.flip(1).float().argmax(1)
    x0 = cols.float().argmax(1)
    x1 = W - cols.flip(1).float().argmax(1)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


CACHE_ABOVE = 64  # px: larger images are generated once and cached to disk


def cache_dir() -> Path:
    """``$LICO_BENCH_CACHE`` or ``~/.cache/lico-bench``."""
    return Path(os.environ.get("LICO_BENCH_CACHE", Path.home() / ".cache" / "lico-bench"))


def generate_cached(split: str, n: int, size: int, seed: int):
    """:func:`generate`, cached to disk above ``CACHE_ABOVE`` px (generation slows with the
    pixel count: ~80 images/s at 224 px on one core). The key includes a hash of this
    module's source, so a change to the generator never reads a stale file."""
    if size <= CACHE_ABOVE:
        return generate(split, n, size, seed)
    from ..io import torch_save

    code = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    path = cache_dir() / f"shapes-{code}-{split}-{n}-{size}px-seed{seed}.pt"
    if path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return d["images"], d["labels"], d["masks"]
        except Exception:  # a damaged cache file is regenerated, never trusted
            pass
    images, labels, masks = generate(split, n, size, seed)
    try:
        torch_save({"images": images, "labels": labels, "masks": masks}, path)
    except OSError:
        pass  # no writable cache: generate again next time
    return images, labels, masks


@lru_cache(maxsize=None)
def _stats(size: int):
    """Per-channel mean/std of the train split (seed 0) at this size, from ~1M pixels."""
    n = max(64, min(CHUNK, CHUNK * 32 * 32 // (size * size)))
    images, _, _ = generate("train", n, size, seed=0)
    x = images.float().div(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def shapes_info(image_size: int = 32) -> DatasetInfo:
    mean, std = _stats(image_size)
    return DatasetInfo("shapes", CLASS_NAMES, mean, std, image_size, has_masks=True)


class ShapesDataset(TensorImageDataset):
    """The built-in dataset; see the module docstring. ``boxes``: [N,4] int64.

    :meth:`scene_parts` re-renders items without each of ``part_names`` in turn
    (:func:`render_parts`), for the part-importance metrics.
    """

    part_names = PARTS

    def __init__(self, split: str = "train", image_size: Optional[int] = None, seed: int = 0,
                 n: Optional[int] = None):
        size = 32 if image_size is None else int(image_size)
        if size < 16:
            raise UserError(f"shapes image size {size} is too small; use 16 px or more (32, 64, 128, 224).")
        if n is None and split not in DEFAULT_SIZES:   # was "split size must be positive, got 0"
            raise UserError(f"unknown split {split!r} of shapes; use one of "
                            f"{', '.join(DEFAULT_SIZES)}.")
        n = DEFAULT_SIZES[split] if n is None else int(n)
        if n <= 0:
            raise UserError(f"shapes split size must be positive, got {n}.")
        self.scene_split, self.seed = split, seed  # the generator's split (a cue split's scenes)
        images, labels, masks = self._generate(split, n, size, seed)
        super().__init__(self._info(size), split, images, labels, masks)
        self.boxes = boxes_from_masks(masks)

    def _generate(self, split: str, n: int, size: int, seed: int):
        return generate_cached(split, n, size, seed)

    def _info(self, size: int) -> DatasetInfo:
        return shapes_info(size)

    def chunk_options(self) -> dict:
        """The :func:`generate_chunk` options that draw this dataset (none: plain shapes)."""
        return {}

    def scene_parts(self, indices):
        """Items ``indices`` re-rendered without each part: :func:`render_parts`."""
        return render_parts(self, indices)



# ------------------------------------------------------------------ scenes without a part
# Ground-truth part importance by intervention (the idea of Hesse et al., ICCV 2023,
# "FunnyBirds", made exact): leaving a part out of generate_chunk (``drop``) still makes its
# random draws, so the image without the part is the same scene, background and pixel noise
# included, where the part was never painted: what was under it shows. A chunk is re-rendered
# once per part, whatever the number of its images asked for (~0.06 s per chunk of 1000
# images at 32 px; ~80 images/s at 224 px).


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

@register_dataset("shapes")
def _shapes(split, root=None, image_size=None, seed=0, download=False, n=None):
    """``shapes``: see :class:`ShapesDataset`."""
    return ShapesDataset(split, image_size=image_size, seed=seed, n=n)

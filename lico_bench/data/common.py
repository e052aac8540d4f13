"""Helpers shared by the real datasets, read from local files: CIFAR-10/100, SVHN, ImageFolder, Imagenette, VOC 2007.

Registered names and where their files live (``ROOT`` is the ``root`` argument, or
``$LICO_BENCH_DATA``, or ``./data`` relative to the working directory)::

    cifar10      ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    cifar100     ROOT/cifar-100-python/{train, test, meta}
    svhn         ROOT/{train,test,extra}_32x32.mat      (or ROOT/svhn/...)
    imagefolder  ROOT/<split>/<class>/*.jpg|png|...
    imagenette   ROOT/{train,val}/n01440764/*.JPEG       (or ROOT/imagenette2[-320|-160]/...)
    voc2007      ROOT/VOCdevkit/VOC2007/{Annotations, JPEGImages, ImageSets/Main}
                 (or ROOT/VOC2007/..., or ROOT pointing at VOC2007 itself)

These are exactly the layouts torchvision's ``CIFAR10/CIFAR100/SVHN/ImageFolder/VOCDetection``
read, so a folder fetched by torchvision works as is. Nothing is downloaded unless
``download=True`` is passed (CIFAR and SVHN only; it calls torchvision to fetch the files).

Splits:

* CIFAR and SVHN: the official ``train`` and ``test`` (SVHN also ``extra``), plus ``val``: a
  seeded hold-out of ``val_size`` training images (default 10 %, permutation from ``seed``).
  ``train`` is the full official training set unless ``val_size`` is passed to it too, in
  which case it leaves out exactly the images that ``val`` (same ``seed`` and ``val_size``)
  holds; pass the same ``val_size`` and ``seed`` to both when tuning on ``val``.
* imagefolder / imagenette: the sub-folders of ``ROOT`` (``train``, ``val``).
* voc2007: ``train``, ``val``, ``trainval``, ``test`` (``ImageSets/Main/<split>.txt``).

The loaders live in :mod:`.cifar`, :mod:`.svhn`, :mod:`.folder` and :mod:`.voc`, each
registering its names; this module holds what they share. Importing :mod:`lico_bench.data`
stays cheap (no scipy, no file access: those happen when a dataset is created).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..options import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE  # noqa: F401  (re-exported)
from .base import DatasetInfo, TensorImageDataset

DATA_ENV = "LICO_BENCH_DATA"


def default_data_root() -> Path:
    """``$LICO_BENCH_DATA`` if set and non-empty, else ``./data`` (made absolute from the cwd,
    so messages name the real place)."""
    return Path(os.environ.get(DATA_ENV) or "data").expanduser().absolute()


def base_root(root) -> Path:
    """The user's ``root`` (``~`` expanded), or :func:`default_data_root` when ``root`` is None."""
    return default_data_root() if root is None else Path(root).expanduser()


def where(base: Path) -> str:
    """``base`` for a "not found under ..." message, saying when the folder itself is
    missing, not a folder or empty (the usual cause: a mistyped or unmounted --root)."""
    if not base.exists():
        return f"{base} (no such folder)"
    if not base.is_dir():
        return f"{base} (not a folder)"
    try:
        empty = not any(base.iterdir())
    except OSError:
        return f"{base} (unreadable)"
    return f"{base} (an empty folder)" if empty else str(base)


def candidates(base: Path, subdirs: Sequence[str] = ()) -> Tuple[Path, ...]:
    """``base`` itself, then ``base/<sub>`` for each conventional sub-folder name."""
    return (base,) + tuple(base / s for s in subdirs)


def check_image_size(name: str, image_size: Optional[int], default: int) -> int:
    size = default if image_size is None else int(image_size)
    if size < MIN_IMAGE_SIZE:
        raise UserError(f"{name} image size {size} is too small; use {MIN_IMAGE_SIZE} px or more.")
    if size > MAX_IMAGE_SIZE:
        raise UserError(f"{name} image size {size} is too large; use {MAX_IMAGE_SIZE} px or less.")
    return size


def check_split(name: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise UserError(f"unknown split {split!r} of {name}; use one of {', '.join(splits)}.")


def holdout(n: int, split: str, val_size: Optional[int], seed: int) -> Tuple[Optional[torch.Tensor], dict]:
    """Indices into the ``n`` official training items for ``split`` in {"train", "val"}.

    ``val`` is the first ``val_size`` entries of a permutation drawn from ``seed`` (default
    ``n // 10``); ``train`` is everything else when ``val_size`` is given, else all items
    (returned as None, meaning "no selection"). Both index lists are sorted, int64.
    Returns ``(indices or None, extra)`` where ``extra`` records the hold-out for the info.
    """
    if split == "train" and not val_size:
        return None, {}
    k = n // 10 if val_size is None else int(val_size)
    if not 0 < k < n:
        raise UserError(f"val_size must be between 1 and {n - 1} (the training set has {n} "
                        f"images), got {k}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    idx = perm[:k] if split == "val" else perm[k:]
    return idx.sort().values, {"val_size": k, "holdout_seed": int(seed)}


class ResizedTensorDataset(TensorImageDataset):
    """In-memory uint8 images stored at their native size, resized on access.

    ``images`` keep the files' resolution ([N, 3, h, w] uint8, e.g. 32x32 for CIFAR, so 50k
    images stay 150 MB); each item or batch is bilinearly resized to ``info.image_size``
    (antialiased when shrinking) before normalisation. Items are [3, S, S] float32.
    """

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] uint8 -> [B, 3, S, S] float32 normalised, S = ``info.image_size``."""
        x = images_u8.float().div_(255.0)
        S = self.info.image_size
        if tuple(x.shape[-2:]) != (S, S):
            x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False,
                              antialias=S < max(x.shape[-2:]))
        return (x - self._mean) / self._std


def in_memory(info: DatasetInfo, split: str, images: torch.Tensor,
              labels: torch.Tensor) -> TensorImageDataset:
    """A :class:`TensorImageDataset`, or a :class:`ResizedTensorDataset` when sizes differ."""
    native = tuple(images.shape[-2:]) == (info.image_size, info.image_size)
    cls = TensorImageDataset if native else ResizedTensorDataset
    return cls(info, split, images, labels)


def torchvision_download(name: str, fetch) -> None:
    """Run ``fetch()`` (a torchvision constructor with ``download=True``); errors -> UserError."""
    try:
        fetch()
    except UserError:
        raise
    except Exception as e:  # network, disk, checksum: all end the same way for the user
        raise UserError(f"downloading {name} failed: {type(e).__name__}: {e}") from e


# --- registry entries -------------------------------------------------------------------
# Each factory has the registry signature factory(split, root, image_size, seed, download,
# **options); unknown options are a TypeError from Python, turned into a UserError here.


def check_options(name: str, options: dict, allowed: Sequence[str]) -> None:
    """A one-line :class:`UserError` naming dataset ``name``'s unknown ``options``."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise UserError(f"unknown option(s) {', '.join(unknown)} for dataset {name}; "
                        f"known: {known}.")

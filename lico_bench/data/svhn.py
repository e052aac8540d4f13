"""SVHN, cropped digits (Netzer et al. 2011), from the MATLAB files.

Files (http://ufldl.stanford.edu/housenumbers/, format 2, as torchvision's ``SVHN`` keeps
them): ``ROOT/{train,test,extra}_32x32.mat`` (or ``ROOT/svhn/...``), each with ``X``
[32, 32, 3, N] uint8 and ``y`` [N, 1], where label 10 stands for the digit 0.

Labels are the digits 0..9 (10 -> 0, as torchvision does). Class names are the digit words
"zero" .. "nine", not "0" .. "9", because LICO feeds class names to a text encoder and words
embed as the concepts they name. Images are held in memory as uint8 [N, 3, 32, 32]; other
``image_size`` values resize bilinearly on access. No masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import UserError
from .base import DatasetInfo, TensorImageDataset
from .common import (base_root, candidates, check_image_size, check_options, check_split, holdout,
                     in_memory, torchvision_download, where)
from .registry import register_dataset

SVHN_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Per-channel mean/std of the SVHN train split in [0, 1], the constants in common use
# (e.g. the SVHN entries of many CIFAR/SVHN training repos built on torchvision).
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
SPLITS = ("train", "val", "test", "extra")
URL = "http://ufldl.stanford.edu/housenumbers/"


def _file(split: str) -> str:
    return f"{'train' if split == 'val' else split}_32x32.mat"


def read_mat(path: Path):
    """One ``*_32x32.mat`` -> images [N, 3, 32, 32] uint8, labels [N] int64 in 0..9."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except Exception as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {e}; fetch it again.") from e
    X, y = mat.get("X"), mat.get("y")
    if X is None or y is None or X.ndim != 4 or X.shape[2] != 3 or X.shape[3] != y.size:
        raise UserError(f"{path}: expected X [32, 32, 3, N] and y [N, 1]; is it an SVHN "
                        f"cropped-digits file (format 2)?")
    labels = y.astype(np.int64).reshape(-1)
    labels[labels == 10] = 0  # the files label the digit 0 as 10
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 1..10.")
    # X is [H, W, C, N]; (3, 2, 0, 1) gives [N, C, H, W], as torchvision transposes it.
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(X, (3, 2, 0, 1)).astype(np.uint8)))
    return images, torch.from_numpy(labels)


def load_svhn(split: str = "train", root=None, image_size: Optional[int] = None, seed: int = 0,
              download: bool = False, val_size: Optional[int] = None) -> TensorImageDataset:
    """SVHN cropped digits.

    Args:
        split: ``train`` (73,257 images, or fewer by ``val_size``), ``val`` (a seeded
            hold-out of ``val_size`` train images, default 10 %), ``test`` or ``extra``.
        root: folder with the ``.mat`` files (or with an ``svhn/`` folder holding them);
            None: ``$LICO_BENCH_DATA`` or ``./data``.
        image_size: side of the items, default 32; other sizes resize bilinearly on access.
        seed: draws the train/val hold-out permutation.
        download: fetch the split's file with torchvision first (into ``root``, or into
            ``./data/svhn`` when ``root`` is None).

    Returns a dataset of items ``(image [3, S, S] float32 normalised, label int, None)``
    with ``.images`` [N, 3, 32, 32] uint8 and ``.labels`` [N] int64.
    """
    check_split("svhn", split, SPLITS)
    size = check_image_size("svhn", image_size, 32)
    base = base_root(root)
    fname = _file(split)

    def find():
        return next((d / fname for d in candidates(base, ("svhn",)) if (d / fname).is_file()), None)

    path = find()
    if path is None and download:
        import torchvision.datasets as tvd

        target = base if root is not None else base / "svhn"
        tv_split = "train" if split == "val" else split
        torchvision_download("SVHN", lambda: tvd.SVHN(str(target), split=tv_split, download=True))
        path = find()
    if path is None:
        raise UserError(f"SVHN not found under {where(base)}: expected {base / fname} (or "
                        f"{base / 'svhn' / fname}); pass --download (download=True in Python) to fetch it with "
                        f"torchvision, or get {fname} from {URL}.")
    images, labels = read_mat(path)
    extra = {}
    if split in ("train", "val"):
        idx, extra = holdout(len(labels), split, val_size, seed)
        if idx is not None:
            images, labels = images[idx], labels[idx]
    info = DatasetInfo("svhn", SVHN_CLASSES, SVHN_MEAN, SVHN_STD, size, has_masks=False,
                       extra=extra)
    return in_memory(info, split, images, labels)


@register_dataset("svhn")
def _svhn(split="train", root=None, image_size=None, seed=0, download=False, **options):
    """``svhn``: see :func:`load_svhn`."""
    check_options("svhn", options, ("val_size",))
    return load_svhn(split, root=root, image_size=image_size, seed=seed, download=download,
                     **options)

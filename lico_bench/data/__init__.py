"""Datasets: one interface, :func:`create_dataset`, for built-in and real data.

Every dataset yields ``(image [3,H,W] float32 normalised, label int, mask [H,W] bool or
None)`` and carries a :class:`DatasetInfo`. Real datasets read local files only; nothing is
downloaded unless ``download=True`` is passed explicitly.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from ..registry import Registry
from .base import Batch, DatasetInfo, LicoDataset, TensorImageDataset, collate

_DATASETS: Registry[Callable[..., LicoDataset]] = Registry("dataset")


def register_dataset(name: str, factory: Optional[Callable[..., LicoDataset]] = None):
    """Register ``factory(split, root, image_size, seed, download, **options)``."""
    return _DATASETS.register(name, factory)


def list_datasets() -> List[str]:
    return _DATASETS.names()


def check_dataset_name(name: str) -> None:
    """A one-line :class:`UserError` listing the known names when ``name`` is not registered."""
    _DATASETS.get(name)


def create_dataset(name: str, split: str = "train", root=None, image_size: Optional[int] = None,
                   seed: int = 0, download: bool = False, **options) -> LicoDataset:
    """Build dataset ``name``'s ``split``. The result has ``.info`` (:class:`DatasetInfo`)."""
    factory = _DATASETS.get(name)
    return factory(split=split, root=root, image_size=image_size, seed=seed, download=download,
                   **options)


def _shapes(split, root=None, image_size=None, seed=0, download=False, n=None):
    from .shapes import ShapesDataset

    return ShapesDataset(split, image_size=image_size, seed=seed, n=n)


register_dataset("shapes", _shapes)

# Real datasets register themselves on import (local files only).
from . import real  # noqa: E402,F401
from . import shapes_cue  # noqa: E402,F401  (shapes-cue, shapes-cue-clean)

__all__ = ["Batch", "DatasetInfo", "LicoDataset", "TensorImageDataset", "check_dataset_name", "collate",
           "create_dataset", "list_datasets", "register_dataset"]

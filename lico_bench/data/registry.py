"""The dataset registry: ``register_dataset`` / ``create_dataset`` / ``list_datasets``.
Each dataset module registers its names when :mod:`lico_bench.data` imports it."""
from __future__ import annotations

from typing import Callable, List, Optional

from ..registry import Registry
from .base import LicoDataset

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

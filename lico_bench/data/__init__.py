"""Datasets: one interface, :func:`create_dataset`, for built-in and real data.

Every dataset yields ``(image [3,H,W] float32 normalised, label int, mask [H,W] bool or
None)`` and carries a :class:`DatasetInfo`. Real datasets read local files only; nothing is
downloaded unless ``download=True`` is passed explicitly.
"""
from __future__ import annotations

from .base import Batch, DatasetInfo, LicoDataset, TensorImageDataset, collate

# Each dataset module registers itself on import (real datasets read local files only).
from . import cifar, folder, shapes, shapes_cue, svhn, voc  # noqa: E402,F401
from .registry import check_dataset_name, create_dataset, list_datasets, register_dataset

__all__ = ["Batch", "DatasetInfo", "LicoDataset", "TensorImageDataset", "check_dataset_name", "collate",
           "create_dataset", "list_datasets", "register_dataset"]

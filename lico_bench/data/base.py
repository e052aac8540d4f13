"""Dataset interface shared by every dataset in :mod:`lico_bench.data`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a metric need to know about a dataset.

    ``mean``/``std`` are the per-channel normalisation constants: images come out of the
    dataset already normalised, so 0 in normalised space is the dataset mean colour.
    """

    name: str
    class_names: Tuple[str, ...]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    image_size: int
    has_masks: bool
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


class Batch(NamedTuple):
    """A batch of items.

    images: [B, 3, H, W] float32, normalised
    labels: [B] int64
    masks:  [B, H, W] bool, or None when the dataset has no masks
    index:  [B] int64, the items' indices in their split
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: Optional[torch.Tensor]
    index: torch.Tensor


class LicoDataset(Dataset):
    """Items are ``(image [3,H,W] float32 normalised, label int, mask [H,W] bool or None)``.

    Subclasses set ``info`` and implement ``__len__`` and ``__getitem__``; in-memory
    datasets also override :meth:`get_batch` to build a batch without a Python loop.
    """

    info: DatasetInfo
    split: str

    def get_batch(self, indices: Sequence[int]) -> Batch:
        items = [self[int(i)] for i in indices]
        images = torch.stack([it[0] for it in items])
        labels = torch.tensor([it[1] for it in items], dtype=torch.long)
        masks = None
        if all(it[2] is not None for it in items) and items:
            masks = torch.stack([it[2] for it in items])
        return Batch(images, labels, masks, torch.as_tensor(list(indices), dtype=torch.long))

    # torch's DataLoader fetches a whole batch through __getitems__ when it exists.
    def __getitems__(self, indices: List[int]) -> Batch:
        return self.get_batch(indices)


def collate(batch) -> Batch:
    """``collate_fn`` for DataLoader: passes a :class:`Batch` through, stacks a list of items."""
    if isinstance(batch, Batch):
        return batch
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
    masks = torch.stack([b[2] for b in batch]) if all(b[2] is not None for b in batch) else None
    return Batch(images, labels, masks, torch.arange(len(batch)))


class TensorImageDataset(LicoDataset):
    """In-memory dataset of uint8 images, normalised on access.

    images: [N, 3, H, W] uint8; labels: [N] int64; masks: [N, H, W] bool or None.
    """

    def __init__(self, info: DatasetInfo, split: str, images: torch.Tensor,
                 labels: torch.Tensor, masks: Optional[torch.Tensor] = None):
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        self.info, self.split = info, split
        self.images, self.labels, self.masks = images, labels.long(), masks
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] uint8 -> [B, 3, H, W] float32 normalised."""
        return (images_u8.float().div_(255.0) - self._mean) / self._std

    def __getitem__(self, i: int):
        img = self.normalise(self.images[i : i + 1])[0]
        mask = None if self.masks is None else self.masks[i]
        return img, int(self.labels[i]), mask

    def get_batch(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        masks = None if self.masks is None else self.masks[idx]
        return Batch(self.normalise(self.images[idx]), self.labels[idx], masks, idx)

"""``lico-bench dataset show``: a grid of samples with their mask contours."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..io import atomic_path
from .base import LicoDataset


def denormalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """images: [B, 3, H, W] float32 normalised -> [B, 3, H, W] float32 in [0, 1]."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * s + m).clamp(0, 1)


def show_grid(dataset: LicoDataset, out: str | Path, n: int = 20, cols: int = 5) -> Path:
    """Draw the first ``n`` items of ``dataset`` with class names and mask contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(dataset))
    batch = dataset.get_batch(list(range(n)))
    imgs = denormalise(batch.images, dataset.info.mean, dataset.info.std)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.95 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(imgs[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        if batch.masks is not None and batch.masks[i].any():
            ax.contour(batch.masks[i].float().numpy(), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(dataset.info.class_names[int(batch.labels[i])], fontsize=8)
    fig.suptitle(f"{dataset.info.name} ({dataset.split}, {dataset.info.image_size} px)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out

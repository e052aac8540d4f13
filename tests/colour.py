"""A model that sees only colour (``baseline_colour`` / ``lico_colour``), for the grid pointing
game's tests by construction, and CIFAR-10-format files of solid-colour images.

``features`` = one module, :class:`ColourCells`: channel k of its output is
``relu(1 - |x_p - c_k|^2 / tau)`` at each pixel p (x_p: the pixel's normalised colour, c_k:
class k's colour, a buffer), so it is exactly 1 on a pixel of colour c_k and exactly 0 on any
pixel of another palette colour (the palette's colours are > sqrt(tau) apart). With
``fc = scale * I`` (bias 0) the logit of class k is ``scale`` x the share of the image's pixels
of colour k: on a solid image of class k, p(k) = e^s / (e^s + K - 1). Grad-CAM of class k on
this layer is ``relu(scale / (hw) * A_k)``: the pixels of colour k, nothing else. Import this
module to register the models.
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

from lico_bench.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from lico_bench.models import Classifier
from tests.family import register_test_family

TAU = 1.0
SCALE = 12.0      # p(k) on a solid image = e^12 / (e^12 + 9) > 0.9999


class ColourCells(nn.Module):
    """x: [B, 3, H, W] float32 normalised -> [B, K, H, W] float32 (module docstring)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("palette", torch.zeros(num_classes, 3))   # [K, 3] normalised

    def forward(self, x):
        d2 = (x[:, None] - self.palette[None, :, :, None, None]).pow(2).sum(2)   # [B, K, H, W]
        return torch.relu(1.0 - d2 / TAU)


def _colour_features(num_classes):
    """[B, 3, H, W] -> [B, K, H, W]: one ColourCells module (the module docstring)."""
    return nn.Sequential(OrderedDict(detect=ColourCells(num_classes))), num_classes


register_test_family("colour", _colour_features, cam_layer="features.detect",
                     lico_text_encoder=None)

# uint8 colours of the ten CIFAR-10 classes: far apart after normalisation (> 1 = sqrt(TAU))
PALETTE_U8 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                       [0, 255, 255], [0, 0, 0], [255, 255, 255], [128, 128, 128],
                       [255, 128, 0]], dtype=np.uint8)

# a colour > 1 from every palette colour after normalisation: every ColourCells channel is 0
STRAY_U8 = np.array([60, 200, 120], dtype=np.uint8)


def palette_normalised() -> torch.Tensor:
    """[10, 3] float32: PALETTE_U8 in CIFAR-10's normalised space (as the dataset gives it)."""
    u = torch.from_numpy(PALETTE_U8).float() / 255.0
    return (u - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)


def colour_model(family: str = "baseline", palette=None, scale: float = SCALE) -> Classifier:
    """A ``<family>_colour`` model for CIFAR-10's 32 px images with the given palette."""
    from lico_bench import create_model

    m = create_model(f"{family}_colour", 10, image_size=32)
    m.cfg.dataset = "cifar10"
    with torch.no_grad():
        m.features.detect.palette.copy_(palette_normalised() if palette is None else palette)
        m.fc.weight.copy_(scale * torch.eye(10))
        m.fc.bias.zero_()
    return m.eval()


def write_colour_cifar10(root, labels, seed: int = 0):
    """CIFAR-10 files under ``root``: test images of solid class colours (image i has colour
    PALETTE_U8[labels[i]] but for 8 random pixels of STRAY_U8, no class's colour, so no two
    images are identical and the model ignores those pixels); two train images. Returns
    ``root``."""
    from tests.data.test_real import write_pickle

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    imgs = np.repeat(PALETTE_U8[np.asarray(labels)][:, :, None], 1024, axis=2)   # [N, 3, 1024]
    for i in range(len(labels)):
        px = rng.choice(1024, size=8, replace=False)
        imgs[i][:, px] = STRAY_U8[:, None]
    data = np.ascontiguousarray(imgs.reshape(len(labels), 3072))

    def batch(x, ys, title):
        return {b"batch_label": title.encode(), b"data": x, b"labels": [int(y) for y in ys],
                b"filenames": [f"img_{i}.png".encode() for i in range(len(ys))]}

    write_pickle(d / "test_batch", batch(data, labels, "testing batch 1 of 1"))
    for i in range(1, 6):
        write_pickle(d / f"data_batch_{i}", batch(data[:2], labels[:2], f"training batch {i} of 5"))
    write_pickle(d / "batches.meta", {b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                      b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    return root

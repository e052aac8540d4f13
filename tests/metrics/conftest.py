"""Tiny models and inputs for the metric tests (seeded, CPU, milliseconds per forward),
and the float tolerances of their forwards, derived from the computation
(``tests/tolerance.py``)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lico_bench.metrics import gaussian_blur

from ..tolerance import EPS32, f32_tol, gamma

from tests import float_path


class TinyConv(nn.Module):
    """conv 3->4, ReLU, 2x2 average pool, linear to 5 classes: a small non-linear classifier."""

    def __init__(self, seed: int = 0, classes: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


# TinyConv's logits: three accumulations in sequence (depth 3): the 3x3x3 conv window plus
# its bias (28 terms), the 2x2 average pool (H/2 * W/2 pixels and the division: 17 at 8 px,
# 37 at 12 px) and the fc (16 features plus its bias).
TINY_DEPTH = 3


def tiny_terms(x: torch.Tensor) -> int:
    """The longest accumulation of TinyConv's forward on inputs [N, 3, H, W]."""
    h, w = x.shape[-2:]
    return max(28, -(-h // 2) * -(-w // 2) + 1)


def tiny_logit_magnitude(model: "TinyConv", x: torch.Tensor) -> float:
    """Sum of |terms| of TinyConv's logits at the logits' scale, for inputs x [N, 3, H, W]
    and for every input whose pixels are each bounded by |x| (a max over items and classes).

    It is the forward of the network with every weight, bias and input replaced by its
    absolute value (float64): each accumulation's sum of |terms|, carried to the logits by
    |W| (ReLU and the average pool do not increase it), is at most this value.
    """
    with torch.no_grad():
        a = x.detach().abs().double().cpu()
        h = F.conv2d(a, model.conv.weight.abs().double().cpu(),
                     model.conv.bias.abs().double().cpu(), padding=model.conv.padding)
        p = F.adaptive_avg_pool2d(h, model.pool.output_size).flatten(1)
        z = F.linear(p, model.fc.weight.abs().double().cpu(), model.fc.bias.abs().double().cpu())
    return float(z.max())


def tiny_logit_tol(model: "TinyConv", x: torch.Tensor, computations: int = 2) -> float:
    """Bound on |logit - logit'| of two float computations of TinyConv at inputs bounded
    pixelwise by |x| (computations=1 against a float64 reference):
    f32_tol(tiny_terms (28 at 8 px), tiny_logit_magnitude, depth 3)."""
    return f32_tol(tiny_terms(x), tiny_logit_magnitude(model, x), depth=TINY_DEPTH,
                   computations=computations)


def prob_tol(logit_tol: float, n_classes: int, eps: float = EPS32) -> float:
    """Bound on |p_k - p'_k| of softmax probabilities whose logits differ by <= logit_tol.

    softmax_tol's argument (tests/tolerance.py), applied both to p_k and to
    1 - p_k = sum_{j != k} p_j (each ratio p'_j / p_j within exp(+-2 d)):
    |p'_k - p_k| <= min(p_k, 1 - p_k) expm1(2 d) <= expm1(2 d) / 2, plus the softmax's own
    rounding 2 gamma_{K+2}. Half of softmax_tol's first term: small enough that a
    probability off by 1e-3 fails where logits are bounded to ~1e-3.
    """
    return math.expm1(2 * float(logit_tol)) / 2 + 2 * gamma(n_classes + 2, eps)


def curve_tol(model: "TinyConv", images: torch.Tensor, score: str, computations: int = 2,
              blur: bool = False) -> float:
    """Bound on |a - b| for two computations of TinyConv's curve points on ``images``.

    Every curve input is pixelwise a blend of the image, 0 and its blur, so bounded by
    max(|x|, blur(|x|)) (positive blur kernel): logits within tiny_logit_tol there (28-term
    conv window, depth 3, magnitude = the |weights| network on those inputs). blur=True
    adds the float32 blur's own error against an exact (float64) one: 121 taps plus the
    kernel's rounding (122 terms) of |terms| blur(|x|), carried to the logits by the same
    |weights| network (f32_tol(122, magnitude at the logits, one computation)).
    Probabilities: prob_tol of that logit bound over 5 classes.
    """
    bound = torch.maximum(images.abs(), gaussian_blur(images.abs()))
    d = tiny_logit_tol(model, bound, computations)
    if blur:
        d += f32_tol(122, tiny_logit_magnitude(model, gaussian_blur(images.abs())), computations=1)
    return d if score == "logit" else prob_tol(d, 5)


class Linear2(nn.Module):
    """Two classes, logit_0 = 0, logit_1 = <w, x>: P(1 | x) = sigmoid(sum_{c,p} w[c,p] x[c,p])."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every forward."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.inner(x)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny forwards are ~100x slower with intra-op threads on a busy 2-core box (the
    perturbed float path of tests/float_path.py uses 2 on purpose)."""
    n = torch.get_num_threads()
    torch.set_num_threads(float_path.THREADS)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny():
    return TinyConv().eval()


@pytest.fixture
def images():
    """[4, 3, 8, 8] float32 normalised-like images."""
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def maps():
    """[4, 8, 8] float32, distinct values (no ties)."""
    return torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(2))

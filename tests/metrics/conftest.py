"""Tiny models and inputs for the metric tests (seeded, CPU, milliseconds per forward)."""
import pytest
import torch
import torch.nn as nn

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

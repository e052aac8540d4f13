"""Tiny models for the explainer tests: fast on two CPU cores, with a ``cfg.cam_layer``."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from lico_bench.models import ModelCfg
from lico_bench.models.backbones import Classifier

ALL_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                  "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
                  "_backward_pre_hooks")


def tiny_net(num_classes: int = 5, seed: int = 0, constant=()) -> Classifier:
    """16 px in, F = block(x): [B, 16, 4, 4] (cam layer ``features.block``), fc 16 -> K.

    ``constant=(c_0, c_1, ...)``: channel i of F is the constant c_i >= 0 for every input
    (zero conv weights, bias c_i, or -1 for a dead ReLU channel when c_i = 0).
    """
    g = torch.Generator().manual_seed(seed)
    features = nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU()),
        block=nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())))
    model = Classifier(features, 16, num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        conv = features.block[0]
        for i, c in enumerate(constant):
            conv.weight[i].zero_()
            conv.bias[i] = c if c > 0 else -1.0
    model.cfg = ModelCfg(name="tiny", arch="tiny", num_classes=num_classes, image_size=16,
                         cam_layer="features.block")
    return model.eval()


class Exploding(Classifier):
    """A tiny net whose ``explode_at``-th forward call raises after the CAM layer ran."""

    def __init__(self, base: Classifier, explode_at: int = 1):
        super().__init__(base.features, base.num_features, base.fc.out_features)
        self.fc, self.cfg = base.fc, base.cfg
        self.calls, self.explode_at = 0, explode_at
        self.eval()

    def head(self, feats):
        self.calls += 1
        if self.calls == self.explode_at:
            raise RuntimeError("boom")
        return super().head(feats)


def leftover_hooks(model: nn.Module):
    """(module name, hook dict) pairs that are not empty."""
    return [(n, d) for n, m in model.named_modules() for d in ALL_HOOK_DICTS
            if len(getattr(m, d, {}))]


@pytest.fixture
def model():
    return tiny_net()


@pytest.fixture
def images():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))

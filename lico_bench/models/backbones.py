"""Classifier backbones: ResNet-18/50 (torchvision) and Wide-ResNet-28-k.

Every classifier is ``logits = fc(GAP(features(x)))`` where ``features(x)`` is the last
block's feature map ``F: [B, C, h, w]`` (LICO.md, "Model"); that is the whole inference
model, and the default CAM layer is the last module of ``features``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class Classifier(nn.Module):
    """``features``: nn.Sequential ending in the CAM layer; ``fc``: nn.Linear(C, K)."""

    def __init__(self, features: nn.Sequential, num_features: int, num_classes: int):
        super().__init__()
        self.features = features
        self.fc = nn.Linear(num_features, num_classes)
        self.num_features = num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] float32 -> F: [B, C, h, w]."""
        return self.features(x)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """F: [B, C, h, w] -> logits [B, K] (global average pooling, then fc)."""
        return self.fc(feats.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def resnet(depth: int, num_classes: int, image_size: int) -> Classifier:
    """torchvision ResNet; at <= 64 px a 3x3 stride-1 stem without max-pool (CIFAR form)."""
    ctor = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    net = ctor(weights=None, num_classes=num_classes)
    if image_size <= 64:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    features = nn.Sequential(OrderedDict(
        conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool,
        layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4))
    clf = Classifier(features, net.fc.in_features, num_classes)
    clf.fc = net.fc
    return clf


class _WideBasic(nn.Module):
    """Pre-activation wide basic block, as in FixMatch's WRN (the LICO recipe's backbone)."""

    def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.001)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.001)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.abr = activate_before_residual

    def forward(self, x):
        if not self.equal and self.abr:
            x = F.leaky_relu(self.bn1(x), 0.1)
            out = x
        else:
            out = F.leaky_relu(self.bn1(x), 0.1)
        out = F.leaky_relu(self.bn2(self.conv1(out if self.equal else x)), 0.1)
        out = self.conv2(out)
        return (x if self.equal else self.shortcut(x)) + out


def wide_resnet(depth: int, widen: int, num_classes: int) -> Classifier:
    """WRN-depth-widen for 32 px inputs; F = leaky-ReLU(BN(block3)) : [B, 64*widen, 8, 8]."""
    assert (depth - 4) % 6 == 0
    n = (depth - 4) // 6
    ch = [16, 16 * widen, 32 * widen, 64 * widen]

    def group(cin, cout, stride, abr):
        return nn.Sequential(*[_WideBasic(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                          abr and i == 0) for i in range(n)])

    features = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, ch[0], 3, 1, 1, bias=False),
        block1=group(ch[0], ch[1], 1, True),
        block2=group(ch[1], ch[2], 2, False),
        block3=group(ch[2], ch[3], 2, False),
        bn=nn.BatchNorm2d(ch[3], momentum=0.001),
        relu=nn.LeakyReLU(0.1)))
    clf = Classifier(features, ch[3], num_classes)
    for m in clf.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return clf

"""A tiny registered architecture (``baseline_tiny``, ``lico_tiny``, and the peers
``guided_tiny``, ``rrr_tiny``, ``sgt_tiny``) so that trainer and
runner tests run in seconds on a CPU. Import this module to register it."""
from collections import OrderedDict

import torch.nn as nn

from tests.family import register_test_family


def _tiny_features(num_classes):
    """[B, 3, H, W] -> [B, 32, H/4, W/4]: two stride-2 conv + BN + ReLU blocks."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 16, 3, 2, 1), bn1=nn.BatchNorm2d(16), relu1=nn.ReLU(),
        conv2=nn.Conv2d(16, 32, 3, 2, 1), bn2=nn.BatchNorm2d(32), relu2=nn.ReLU())), 32


register_test_family("tiny", _tiny_features, cam_layer="features.relu2",
                     families=("baseline", "lico", "guided", "rrr", "sgt"))

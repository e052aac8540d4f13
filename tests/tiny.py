"""A tiny registered architecture (``baseline_tiny``, ``lico_tiny``, and the peers
``guided_tiny``, ``rrr_tiny``, ``sgt_tiny``) so that trainer and
runner tests run in seconds on a CPU. Import this module to register it."""
from collections import OrderedDict

import torch.nn as nn

from lico_bench.models import Classifier, ModelCfg, list_models, register_model


def _tiny_factory(family):
    def factory(num_classes, image_size=32, **cfg_fields):
        feats = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, 2, 1), bn1=nn.BatchNorm2d(16), relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, 2, 1), bn2=nn.BatchNorm2d(32), relu2=nn.ReLU()))
        m = Classifier(feats, 32, num_classes)
        cfg_fields.setdefault("text_encoder", "minilm" if family == "lico" else None)
        m.cfg = ModelCfg(name=f"{family}_tiny", arch="tiny", num_classes=num_classes,
                         image_size=image_size, cam_layer="features.relu2", family=family,
                         **cfg_fields)
        return m
    return factory


for _fam in ("baseline", "lico", "guided", "rrr", "sgt"):
    if f"{_fam}_tiny" not in list_models():
        register_model(f"{_fam}_tiny", _tiny_factory(_fam))

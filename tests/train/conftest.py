"""A tiny registered architecture so that trainer tests run in seconds on a CPU."""
import os
from collections import OrderedDict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch.nn as nn  # noqa: E402

from lico_bench.models import Classifier, ModelCfg, list_models, register_model  # noqa: E402


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


for fam in ("baseline", "lico"):
    if f"{fam}_tiny" not in list_models():
        register_model(f"{fam}_tiny", _tiny_factory(fam))


@pytest.fixture
def tiny_cfg(tmp_path):
    from lico_bench.train import make_config

    def make(model="baseline_tiny", **kw):
        base = dict(model=model, n_train=128, epochs=2, batch_size=32, lr=0.05, n_ctx=2,
                    out=str(tmp_path / "runs"), device="cpu")
        base.update(kw)
        return make_config("quick", **base)
    return make

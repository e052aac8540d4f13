"""Registering a test-only architecture as a ``baseline_<arch>`` / ``lico_<arch>`` pair, or
more families (the
tiny CNN of tests/tiny.py, the colour model of tests/colour.py)."""
from typing import Callable, Optional, Tuple

import torch.nn as nn

from lico_bench.models import Classifier, ModelCfg, list_models, register_model


def register_test_family(arch: str, features: Callable[[int], Tuple[nn.Module, int]],
                         cam_layer: str, lico_text_encoder: Optional[str] = "minilm",
                         families: Tuple[str, ...] = ("baseline", "lico")) -> None:
    """Register ``<family>_<arch>`` for each of ``families`` unless already registered (a test
    module imported twice is a no-op).

    ``features(num_classes) -> (module, feat_dim)``: the backbone, whose output of
    ``feat_dim`` channels the Classifier pools and feeds to its ``fc``; ``cam_layer``: the
    dotted module name Grad-CAM hooks; ``lico_text_encoder``: what ``lico_<arch>`` records as
    its text encoder when none is given (baseline models record none).
    """
    def factory_of(family: str):
        def factory(num_classes, image_size=32, **cfg_fields):
            feats, feat_dim = features(num_classes)
            m = Classifier(feats, feat_dim, num_classes)
            cfg_fields.setdefault("text_encoder", lico_text_encoder if family == "lico" else None)
            m.cfg = ModelCfg(name=f"{family}_{arch}", arch=arch, num_classes=num_classes,
                             image_size=image_size, cam_layer=cam_layer, family=family,
                             **cfg_fields)
            return m
        return factory

    for family in families:
        if f"{family}_{arch}" not in list_models():
            register_model(f"{family}_{arch}", factory_of(family))

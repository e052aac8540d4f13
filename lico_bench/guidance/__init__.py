"""LICO's peers: training methods that claim (or are built to give) better saliency maps,
each a model family of its own (``guided_<arch>``, ``rrr_<arch>``, ``sgt_<arch>``, see
:mod:`.families`), with its loss term as pure functions (:mod:`.losses`). No file I/O.
"""
from __future__ import annotations

from .families import FAMILIES, GuidanceFamily, family_of, model_name
from .losses import (SGT_RANKS, GuidanceLoss, energy_loss, gradcam_true_class, guided_loss,
                     rrr_penalty, sgt_kl, sgt_masked_input)

__all__ = ["FAMILIES", "GuidanceFamily", "GuidanceLoss", "SGT_RANKS", "energy_loss",
           "family_of", "gradcam_true_class", "guided_loss", "model_name", "rrr_penalty",
           "sgt_kl", "sgt_masked_input"]

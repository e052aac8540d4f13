"""LICO's training branch (Lei et al., NeurIPS 2023, arXiv 2310.09821): frozen text
encoders, the prompt learner, the manifold-matching and optimal-transport losses, and
:class:`LicoHead`, which bundles them for the trainer. Pure functions and small modules,
no file I/O beyond loading a text encoder's weights.
"""
from __future__ import annotations

from .head import LicoHead, MappingNet
from .losses import (manifold_matching_loss, ot_cost, ot_loss, pairwise_distance, sinkhorn,
                     sinkhorn_log)
from .prompts import PromptLearner, prompt_text
from .text import (TEXT_ENCODERS, ClipBPETokenizer, CLIPTextEncoder, MiniLMTextEncoder,
                   TextEncoder, create_text_encoder)

__all__ = ["CLIPTextEncoder", "ClipBPETokenizer", "LicoHead", "MappingNet", "MiniLMTextEncoder",
           "PromptLearner", "TEXT_ENCODERS", "TextEncoder", "create_text_encoder",
           "manifold_matching_loss", "ot_cost", "ot_loss", "pairwise_distance", "prompt_text",
           "sinkhorn", "sinkhorn_log"]

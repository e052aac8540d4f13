"""The ``clip`` / ``clip_gelu`` text encoders: the text tower of an OpenAI CLIP / open_clip
checkpoint file; see :mod:`lico_bench.lico.text`."""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import UserError
from ..io import is_torchscript_archive, torchscript_tensors
from .clip_tokenizer import ClipBPETokenizer, _find_clip_tokenizer
from .text_base import TextEncoder, register_text_encoder


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualAttentionBlock(nn.Module):
    """Pre-LN block with OpenAI's parameter names (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj)."""

    def __init__(self, width: int, heads: int, act: nn.Module):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=act,
                                             c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, attn_mask=attn_mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, act_fn):
        super().__init__()
        self.resblocks = nn.ModuleList(_ResidualAttentionBlock(width, heads, act_fn())
                                       for _ in range(layers))


_CLIP_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
                   "text_projection")


def _short(msg: str, limit: int = 120) -> str:
    """First sentence of a library's error, on one line, at most ``limit`` characters."""
    msg = " ".join(msg.split()).split(". ")[0]
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _convert_hint(path: Path) -> str:
    """How to turn a TorchScript CLIP file into a state dict lico-bench reads."""
    out = path.with_name(path.stem + "-state.pt")
    return (f"if you trust the file, convert it to a state dict with: python -c \"import torch; "
            f"torch.save(torch.jit.load('{path}', map_location='cpu').state_dict(), '{out}')\" "
            f"(this runs the archive's code) and pass {str(out)!r}")


def _load_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}``; UserError if unreadable.

    No file's code ever runs: a state dict loads with ``torch.load(weights_only=True)``,
    ``.safetensors`` with safetensors, and a TorchScript archive (OpenAI's released ``.pt``
    files) through :func:`~lico_bench.io.torchscript_tensors`, which reads its stored tensors
    without compiling or running the archive (``torch.jit.load`` would run its code,
    ``__setstate__`` included, while loading)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path), device="cpu")
        elif is_torchscript_archive(path):
            obj = torchscript_tensors(path, f"CLIP checkpoint {str(path)!r}", _convert_hint(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as e:
        msg = _short(str(e) or type(e).__name__)
        raise UserError(f"cannot read CLIP checkpoint {str(path)!r} ({msg}); expected a CLIP "
                        f"state dict (.pt/.pth/.bin/.safetensors) or OpenAI's TorchScript "
                        f".pt") from None
    for key in ("state_dict", "model"):          # common training-checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise UserError(f"{str(path)!r} is not a CLIP text state dict (it holds a "
                        f"{type(obj).__name__}, not a dict of tensors)")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _clip_text_state(sd: Dict[str, torch.Tensor], path: Path) -> Dict[str, torch.Tensor]:
    """Keep the text tower's keys, stripping a common prefix (``module.``, ``text.`` ...)."""
    heads = [k[: -len("token_embedding.weight")] for k in sd if k.endswith("token_embedding.weight")]
    if len(heads) != 1:
        raise UserError(f"{str(path)!r} is not a CLIP text state dict (no single "
                        f"token_embedding.weight; OpenAI/open_clip layout expected)")
    pre = heads[0]
    out = {k[len(pre):]: v for k, v in sd.items()
           if k.startswith(pre) and k[len(pre):].startswith(_CLIP_TEXT_KEYS)}
    need = ["positional_embedding", "ln_final.weight", "text_projection",
            "transformer.resblocks.0.attn.in_proj_weight"]
    missing = [k for k in need if k not in out]
    if missing:
        raise UserError(f"{str(path)!r} is not a CLIP text state dict (missing "
                        f"{', '.join(missing)})")
    return out


class CLIPTextEncoder(TextEncoder):
    """OpenAI CLIP text transformer (causal, pre-LN), built from a state dict's shapes.

    As OpenAI's ``build_model``: width = ln_final.weight.shape[0], heads = width // 64,
    layers = number of ``transformer.resblocks.N``, context length =
    positional_embedding.shape[0], output size D = text_projection.shape[1].
    """

    name = "clip"

    def __init__(self, checkpoint: os.PathLike | str, quick_gelu: bool = True,
                 tokenizer: Optional[ClipBPETokenizer] = None):
        super().__init__()
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"CLIP checkpoint {str(path)!r} not found"
                            + (" (it is a folder; pass the weights file)" if path.is_dir() else "")
                            + "; pass the path of a local CLIP weights file (e.g. ViT-B-32.pt) "
                            "as --text-checkpoint, or use --text-encoder minilm")
        sd = _clip_text_state(_load_state_dict(path), path)
        width = sd["ln_final.weight"].shape[0]
        layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        vocab, tok_dim = sd["token_embedding.weight"].shape
        ctx_len = sd["positional_embedding"].shape[0]
        heads = max(1, width // 64)
        if tok_dim != width or sd["text_projection"].dim() != 2 or width % heads:
            raise UserError(f"{str(path)!r} is not a CLIP text state dict (inconsistent shapes)")
        act = QuickGELU if quick_gelu else nn.GELU
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(ctx_len, width))
        self.transformer = _Transformer(width, layers, heads, act)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, sd["text_projection"].shape[1]))
        sd = {k: v.float() for k, v in sd.items()}   # OpenAI ships fp16 weights
        try:
            self.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            bad = re.findall(r"size mismatch for ([\w.]+)", str(e))
            detail = ("wrong shape of " + ", ".join(bad[:3]) if bad
                      else _short(str(e).split(":", 1)[-1]))
            raise UserError(f"{str(path)!r} is not a CLIP text state dict this loader supports "
                            f"({detail})") from None
        self.name = "clip" if quick_gelu else "clip_gelu"
        self.width = int(sd["text_projection"].shape[1])
        self.token_dim = int(width)
        self.max_length = int(ctx_len)
        self._tokenizer = tokenizer if tokenizer is not None else _find_clip_tokenizer(path)
        if max(self._tokenizer.sot_id, self._tokenizer.eot_id) >= vocab:
            raise UserError(f"CLIP tokenizer files next to {str(path)!r} do not match the "
                            f"checkpoint (vocabulary {vocab} < token id "
                            f"{max(self._tokenizer.sot_id, self._tokenizer.eot_id)})")
        self._freeze()

    def tokenize(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        tok = self._tokenizer
        rows = [[tok.sot_id] + tok.encode(t) + [tok.eot_id] for t in texts]
        longest = max(len(r) for r in rows)
        if longest > self.max_length:
            raise UserError(f"text too long for the CLIP text encoder ({longest} > "
                            f"{self.max_length} tokens); shorten the class names")
        ids = torch.zeros(len(rows), longest, dtype=torch.long)   # pad id 0, as OpenAI
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """EOT position = last attended token (= argmax of OpenAI token ids, EOT being the
        largest id). Causal attention makes padding after EOT irrelevant, so sequences
        shorter than the context length are exact."""
        return self.encode_tokens(inputs_embeds, attention_mask)[1]

    def encode_tokens(self, inputs_embeds: torch.Tensor,
                      attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens = every position's final state through ``text_projection`` (the space of
        ``encode_text``); sentence = the EOT token's row of it."""
        n, length, _ = inputs_embeds.shape
        x = inputs_embeds + self.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device,
                            dtype=x.dtype).triu_(1)
        for blk in self.transformer.resblocks:
            x = blk(x, causal)
        x = self.ln_final(x)
        eot = attention_mask.to(x.device).long().sum(1) - 1                   # [N]
        tokens = x @ self.text_projection                                     # [N, L, D]
        return tokens, tokens[torch.arange(n, device=x.device), eot]          # [N, D]


def _clip_factory(name: str):
    def make(checkpoint: Optional[os.PathLike | str] = None) -> CLIPTextEncoder:
        if checkpoint is None:
            raise UserError(f"text encoder {name!r} needs a local CLIP checkpoint file; "
                            f"pass its path (or use the offline default 'minilm')")
        return CLIPTextEncoder(checkpoint, quick_gelu=(name == "clip"))
    return make


register_text_encoder("clip")(_clip_factory("clip"))
register_text_encoder("clip_gelu")(_clip_factory("clip_gelu"))

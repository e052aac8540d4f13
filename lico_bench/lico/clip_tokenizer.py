"""CLIP's byte-level BPE tokenizer (OpenAI ``SimpleTokenizer``, reimplemented) and the search
for its merges file; see :mod:`lico_bench.lico.text`."""
from __future__ import annotations

import gzip
import html
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import UserError


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

"""Fixtures for the LICO branch: a tiny random CLIP text tower written to disk (OpenAI
layout, with its BPE merges file) and, once per module that asks, the packaged MiniLM."""
import gzip
import os
import warnings
from typing import Tuple

# The text encoders must work without a network: make any hub access fail loudly.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

# A few merges so that "cat", "dog" and "ship" become single tokens.
MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("s", "h"), ("sh", "i"),
          ("shi", "p</w>")]


def write_tiny_clip(folder, width=128, layers=2, ctx_len=40, embed_dim=48, seed=0,
                    with_visual=True, with_tokenizer=True, name="tiny_clip.pt"):
    """Write a random CLIP state dict with OpenAI's key layout (text + a stub visual part).

    Returns (path, state_dict). heads = width // 64, as OpenAI's build_model infers.
    """
    g = torch.Generator().manual_seed(seed)
    vocab = 512 + len(MERGES) + 2

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    sd = {"token_embedding.weight": rnd(vocab, width),
          "positional_embedding": rnd(ctx_len, width, std=0.01),
          "ln_final.weight": 1 + rnd(width, std=0.1), "ln_final.bias": rnd(width),
          "text_projection": rnd(width, embed_dim, std=width ** -0.5),
          "logit_scale": torch.tensor(4.6052)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": rnd(3 * width, width, std=width ** -0.5),
                   p + "attn.in_proj_bias": rnd(3 * width),
                   p + "attn.out_proj.weight": rnd(width, width, std=width ** -0.5),
                   p + "attn.out_proj.bias": rnd(width),
                   p + "ln_1.weight": 1 + rnd(width, std=0.1), p + "ln_1.bias": rnd(width),
                   p + "mlp.c_fc.weight": rnd(4 * width, width, std=width ** -0.5),
                   p + "mlp.c_fc.bias": rnd(4 * width),
                   p + "mlp.c_proj.weight": rnd(width, 4 * width, std=(4 * width) ** -0.5),
                   p + "mlp.c_proj.bias": rnd(width),
                   p + "ln_2.weight": 1 + rnd(width, std=0.1), p + "ln_2.bias": rnd(width)})
    if with_visual:   # a full CLIP checkpoint also holds the image tower: must be ignored
        sd["visual.conv1.weight"] = rnd(8, 3, 4, 4)
        sd["visual.transformer.resblocks.0.attn.in_proj_weight"] = rnd(24, 8)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    torch.save(sd, path)
    if with_tokenizer:
        with gzip.open(os.path.join(folder, "bpe_simple_vocab_16e6.txt.gz"), "wt") as f:
            f.write("\"bpe_simple_vocab_16e6.txt#version: 0.2\n")
            f.write("\n".join(" ".join(m) for m in MERGES) + "\n")
    return path, sd


class _Holder(torch.nn.Module):
    """A scripted module that only holds parameters (OpenAI's archives nest modules so)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _SetstatePayload(torch.nn.Module):
    """A LayerNorm-like holder whose TorchScript ``__setstate__`` - code in the archive that
    ``torch.jit.load`` runs while loading - prints a line and overwrites the stored weight
    with 7s, so a load that runs it is visible in what it returns."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, torch.Tensor, bool]:
        return (self.weight, self.bias, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, torch.Tensor, bool]) -> None:
        print("the payload ran")
        self.weight = torch.full_like(state[0], 7.0)
        self.bias = state[1]
        self.training = state[2]


def write_torchscript_clip(path, sd, payload=False):
    """Save ``sd`` as a TorchScript archive (as OpenAI ships CLIP: ``torch.jit.save`` of a
    module tree whose parameter names are the state dict's keys). With ``payload`` the
    ``ln_final`` module carries :class:`_SetstatePayload`. Returns ``path``."""
    root = _Holder()
    for key, value in sd.items():
        *mods, leaf = key.split(".")
        if payload and mods == ["ln_final"]:
            if not hasattr(root, "ln_final"):
                root.ln_final = _SetstatePayload(sd["ln_final.weight"], sd["ln_final.bias"])
            continue
        m = root
        for part in mods:
            if not hasattr(m, part):
                m.add_module(part, _Holder())
            m = getattr(m, part)
        m.register_parameter(leaf, torch.nn.Parameter(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # torch.jit.script deprecation
        torch.jit.script(root).save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """(checkpoint path, state dict) of a tiny CLIP: width 128, 2 heads, 2 layers, D = 48."""
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def clip_encoder(tiny_clip):
    from lico_bench.lico import create_text_encoder
    return create_text_encoder("clip", tiny_clip[0])

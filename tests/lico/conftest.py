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


# ----------------------------------------------------------------------------- tolerances
# Bounds for two computations of a text tower's outputs, from tests/tolerance.py: the
# longest accumulation (n_terms), the accumulations in sequence (depth) and the magnitude of
# the last accumulation's terms at the output's scale, taken from the actual activations.
# First order: every LayerNorm rescales the error it receives with the activations, so the
# rounding of earlier layers reaches the output at that scale. A float64 twin of the same
# computation (same weights, converted exactly) has the same bound with EPS64.

def weights_eps(module):
    """EPS64 for a module whose weights are float64, else EPS32."""
    from tests.tolerance import EPS32, EPS64
    return EPS64 if next(module.parameters()).dtype == torch.float64 else EPS32


def clip_tol(enc, seq, mask, extra_depth=0, computations=2):
    """Bound on |a - b| for two computations of ``enc.encode_tokens(seq, mask)`` (tokens
    [N, L, D] and sentences [N, D], float32 or float64 by the weights' dtype).

    n_terms: c_proj's 4 * width hidden units, the longest accumulation (>= the attention
    length L <= 40); depth: 11 per block (ln_1's mean and variance, in_proj, q k^T, the
    softmax's sum, attention @ v, out_proj, ln_2's mean and variance, c_fc, c_proj) + 3
    (ln_final's mean and variance, text_projection) + ``extra_depth`` accumulations after the
    tower; magnitude: the largest sum_i |ln_final(x)_i| |P_ij|, the terms of the last
    accumulation.
    """
    from tests.tolerance import f32_tol
    seen = []
    hook = enc.ln_final.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.no_grad():
            enc.encode_tokens(seq.to(next(enc.parameters()).dtype), mask)
    finally:
        hook.remove()
    magnitude = (seen[0].abs() @ enc.text_projection.detach().abs()).max().item()
    width = enc.token_dim
    depth = 11 * len(enc.transformer.resblocks) + 3 + extra_depth
    return f32_tol(max(4 * width, seq.shape[1]), magnitude, depth=depth,
                   computations=computations, eps=weights_eps(enc))


def minilm_tol(enc, ids, mask, computations=2):
    """Bound on |a - b| for two computations of MiniLM's last hidden states [N, L, 384] for
    ``ids`` (float32 or float64 by the weights' dtype).

    n_terms: the 1536 intermediate units summed by each layer's output dense, the longest
    accumulation (>= the length L); depth: 2 (the embeddings' LayerNorm) + 11 per layer
    (query/key/value, q k^T, the softmax's sum, attention @ v, the attention's output
    dense, its LayerNorm's mean and variance, intermediate, output dense, LayerNorm's mean
    and variance); magnitude: the last output dense's terms and residual, sum_i |h_i W_ji| +
    |b_j| + |residual_j|, times the last LayerNorm's gain |w_j| / std(x), the largest over
    the positions and features.
    """
    from tests.tolerance import f32_tol
    model = enc.model
    out = model.encoder.layer[-1].output
    seen = []
    hook = out.register_forward_pre_hook(lambda m, args: seen.append([a.detach() for a in args]))
    try:
        with torch.no_grad():
            enc.encode_tokens(enc.embed(ids), mask)
    finally:
        hook.remove()
    h, res = seen[0]
    w, b = out.dense.weight.detach(), out.dense.bias.detach()
    terms = h.abs() @ w.abs().T + b.abs() + res.abs()
    x = h @ w.T + b + res
    std = (x.var(-1, unbiased=False, keepdim=True) + out.LayerNorm.eps).sqrt()
    magnitude = (out.LayerNorm.weight.detach().abs() / std * terms).max().item()
    depth = 2 + 11 * model.config.num_hidden_layers
    return f32_tol(max(model.config.intermediate_size, ids.shape[1]), magnitude, depth=depth,
                   computations=computations, eps=weights_eps(enc))


def assert_within(actual, expected, bound):
    """|actual - expected| <= bound elementwise (bound: a float or a tensor of the shape)."""
    diff = (actual - expected).abs()
    excess = diff - bound
    assert (excess <= 0).all(), (f"greatest difference {diff.max().item():.3g}, "
                                 f"{excess.max().item():.3g} over the bound")

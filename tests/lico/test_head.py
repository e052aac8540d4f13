"""Prompt learner and LicoHead on the tiny CLIP tower: per-token and rolled text targets,
label order, gradients reach the context and never the frozen encoder, what each LICO
variant trains, checkpoint contents."""
import copy
import math

import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.lico import (LicoHead, MappingNet, PromptLearner, manifold_matching_loss,
                             ot_loss, prompt_text)
from tests.tolerance import EPS32, f32_tol, gamma

from .conftest import assert_within, clip_tol

NAMES = ["ship", "cat", "dog", "a cat"]     # deliberately not alphabetical


def _head(enc, seed=0, **kw):
    return LicoHead(enc, NAMES, feat_hw=6, n_ctx=4, generator=torch.Generator().manual_seed(seed),
                    **kw)


def _prompt_seqs(pl, names=NAMES):
    """Every prompt ``pl`` encodes, written out: [(input embeddings [1, L, W], mask [1, L])],
    one per class (per class and rolled copy for "rolled"), in ``pl``'s dtype."""
    enc = pl.text_encoder
    copies = pl.contexts() if pl.targets == "rolled" else pl.ctx[None]        # [M', n, W]
    out = []
    for name in names:
        ids, mask = enc.tokenize([prompt_text(name)])
        emb = enc.embed(ids).to(pl.ctx.dtype)
        full_mask = torch.cat([torch.ones(1, pl.n_ctx, dtype=torch.long), mask], dim=1)
        out += [(torch.cat([emb[:, :1], c[None], emb[:, 1:]], dim=1), full_mask) for c in copies]
    return out


def _pl_tol(pl, extra_depth=1):
    """clip_tol over every prompt of ``pl``: the largest magnitude among its prompts;
    extra_depth 1: the mean over a class name's tokens."""
    return max(clip_tol(pl.text_encoder, seq, mask, extra_depth=extra_depth)
               for seq, mask in _prompt_seqs(pl))


def _twin(pl):
    """The float64 twin of a prompt learner: the same encoder weights and context vectors,
    converted exactly; its outputs are float64 computations rounded once to float32."""
    return copy.deepcopy(pl).double()


def test_token_targets_are_the_prompts_token_outputs(clip_encoder):
    """T[k] = the encoder's outputs at the 4 context positions of class k's one prompt,
    then the mean of its name tokens' outputs; s[k] = the prompt's sentence feature."""
    enc = clip_encoder
    pl = PromptLearner(enc, NAMES, n_ctx=4, generator=torch.Generator().manual_seed(0))
    assert pl.targets == "tokens" and pl.num_prompts == 5
    t, s = pl()
    assert t.shape == (len(NAMES), 5, enc.width) and s.shape == (len(NAMES), enc.width)
    assert t.dtype == s.dtype == torch.float32
    pl64 = _twin(pl)
    t64, s64 = pl64()
    for k, ((seq, full_mask), (seq64, _), name) in enumerate(zip(_prompt_seqs(pl),
                                                                  _prompt_seqs(pl64), NAMES)):
        n_name = len(enc.tokenize([name])[0][0]) - 2          # "a cat" is 2 tokens
        # The batched prompts vs this prompt alone: two float32 runs of the tower (clip_tol:
        # n_terms 4 * width = 512, depth 25 + 1 for the name's mean, magnitude from the
        # activations, ~10) - a worst case of ~1.6e-2 on outputs of ~3, loose by design ...
        tol = clip_tol(enc, seq, full_mask, extra_depth=1)
        tokens, sent = enc.encode_tokens(seq, full_mask)
        torch.testing.assert_close(s[k], enc(seq, full_mask)[0], rtol=0, atol=tol)
        torch.testing.assert_close(s[k], sent[0], rtol=0, atol=tol)
        torch.testing.assert_close(t[k, :4], tokens[0, 1:5], rtol=0, atol=tol)
        torch.testing.assert_close(t[k, 4], tokens[0, 5:5 + n_name].mean(0), rtol=0, atol=tol)
        # ... so the same assembly is checked tightly on the float64 twin: the same bound
        # with EPS64 (~3e-11), plus the one rounding of pl's outputs to float32 (EPS32 / 2
        # relative). A target off by 1e-5 fails here.
        tol64 = clip_tol(pl64.text_encoder, seq64, full_mask, extra_depth=1)
        tokens64, sent64 = pl64.text_encoder.encode_tokens(seq64, full_mask)
        torch.testing.assert_close(s64[k].double(), sent64[0], rtol=EPS32 / 2, atol=tol64)
        torch.testing.assert_close(t64[k, :4].double(), tokens64[0, 1:5], rtol=EPS32 / 2,
                                   atol=tol64)
        # The name's mean runs on the float32-rounded tokens: each token rounded (u), a sum
        # of n_name terms and a division, <= gamma(n_name + 2) * mean |token| in all.
        name64 = tokens64[0, 5:5 + n_name]
        assert_within(t64[k, 4].double(), name64.mean(0),
                      tol64 + gamma(n_name + 2) * name64.abs().mean(0))
    # Distinct across a class's positions, and its name target distinct across classes:
    # farther apart than two computations of one vector can be (sqrt(D) * the bound).
    apart = 2 * enc.width ** 0.5 * _pl_tol(pl)
    d = torch.cdist(t, t)                                             # [K, M, M]
    assert (d + torch.eye(5) * 1e9).min() > apart
    dn = torch.cdist(t[:, 4], t[:, 4])
    assert (dn + torch.eye(len(NAMES)) * 1e9).min() > apart
    # CLIP's attention is causal: a context position never sees the name that follows it,
    # so with CLIP the context targets are the same for every class (MiniLM: near-equal):
    # rows of one batched float32 run (clip_tol), and of the float64 twin (EPS64 bound, plus
    # each side's rounding to float32: EPS32 relative).
    torch.testing.assert_close(t[:, :4], t[:1, :4].expand(len(NAMES), -1, -1), rtol=0,
                               atol=_pl_tol(pl))
    torch.testing.assert_close(t64[:, :4], t64[:1, :4].expand(len(NAMES), -1, -1), rtol=EPS32,
                               atol=_pl_tol(pl64))


def test_token_targets_on_minilm_differ_within_and_across_classes():
    """The built-in classes through MiniLM: no two of a class's M targets with cosine > 0.99
    (rolled copies: >= 0.98, LICO.md), the class-name targets differ across classes, and
    the loss reaches the context vectors."""
    from lico_bench.data import create_dataset
    from lico_bench.lico import create_text_encoder

    names = create_dataset("shapes", "test").info.class_names
    enc = create_text_encoder("minilm")
    pl = PromptLearner(enc, names, n_ctx=12, generator=torch.Generator().manual_seed(0))
    t, s = pl()
    assert t.shape == (10, 13, 384)
    u = torch.nn.functional.normalize(t, dim=-1)
    within = u @ u.transpose(1, 2)                                # [K, M, M]
    assert within[:, ~torch.eye(13, dtype=torch.bool)].max() < 0.99
    name = u[:, -1]                                               # [K, D]
    across = name @ name.T
    assert across[~torch.eye(10, dtype=torch.bool)].max() < 0.99
    (t.sum() + s.sum()).backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0


def test_rolled_targets_shapes_rolls_and_label_order(clip_encoder):
    enc = clip_encoder
    pl = PromptLearner(enc, NAMES, n_ctx=4, generator=torch.Generator().manual_seed(0),
                       targets="rolled")
    assert pl.ctx.shape == (4, enc.token_dim) and pl.num_prompts == 4
    # init N(0, 0.02^2): the sample std of n = 4 * 128 draws has standard error
    # 0.02 / sqrt(2 (n - 1)) ~ 6e-4; within 5 of them (a statistical bound, not rounding).
    n = pl.ctx.numel()
    assert abs(pl.ctx.std().item() - 0.02) < 5 * 0.02 / math.sqrt(2 * (n - 1))
    ctxs = pl.contexts()
    for i in range(4):
        assert torch.equal(ctxs[i], torch.roll(pl.ctx, i, dims=0))
    t, s = pl()
    assert torch.equal(s, t[:, 0])                   # MM's sentence = the unrolled prompt
    assert t.shape == (len(NAMES), 4, enc.width) and t.dtype == torch.float32
    pl64 = _twin(pl)
    t64, _ = pl64()
    # Row k, copy i is exactly "<sot> roll(ctx, i) <name k> . <eot>" through the encoder:
    # float32, batched vs alone (clip_tol: n_terms 512, depth 25, magnitude from the
    # activations; loose), and tightly on the float64 twin (EPS64, plus pl's one rounding
    # to float32).
    for k, name in enumerate(NAMES):
        ids, mask = enc.tokenize([prompt_text(name)])
        full_mask = torch.cat([torch.ones(1, 4, dtype=torch.long), mask], dim=1)
        for i in range(4):
            for one, out in ((pl, t), (pl64, t64)):
                e = one.text_encoder
                emb = e.embed(ids)
                seq = torch.cat([emb[:, :1], torch.roll(one.ctx, i, 0)[None], emb[:, 1:]], dim=1)
                want = e(seq, full_mask)[0]
                torch.testing.assert_close(out[k, i].to(want.dtype), want,
                                           rtol=0 if one is pl else EPS32 / 2,
                                           atol=clip_tol(e, seq, full_mask))
    # The M copies are distinct vectors (the released code's copies were identical):
    # farther apart than two computations of one vector can be (sqrt(D) * the bound).
    d = torch.cdist(t.reshape(-1, enc.width), t.reshape(-1, enc.width))
    assert (d + torch.eye(d.shape[0]) * 1e9).min() > 2 * enc.width ** 0.5 * _pl_tol(pl, 0)


@pytest.mark.parametrize("targets", ["tokens", "rolled"])
def test_prompt_subset_equals_rows_of_full(clip_encoder, targets):
    pl = PromptLearner(clip_encoder, NAMES, n_ctx=3, generator=torch.Generator().manual_seed(1),
                       targets=targets)
    classes = torch.tensor([0, 2])          # shortest names: the padding gets trimmed
    # Trimmed vs padded batch: two float32 runs (clip_tol over the prompts, + 1: the name's
    # mean), and the float64 twin (EPS64 bound, plus each side's rounding to float32; classes
    # 0 and 2 have one-token names, so the name's float32 mean is that token, exactly).
    for part, full in zip(pl(classes), pl()):
        torch.testing.assert_close(part, full[classes], rtol=0, atol=_pl_tol(pl))
    pl64 = _twin(pl)
    for part, full in zip(pl64(classes), pl64()):
        torch.testing.assert_close(part, full[classes], rtol=EPS32, atol=_pl_tol(pl64))


def test_prompt_too_long_is_user_error(clip_encoder):
    with pytest.raises(UserError) as e:
        PromptLearner(clip_encoder, ["cat"], n_ctx=38)          # context length is 40
    assert "too long" in str(e.value) and "\n" not in str(e.value)


def test_head_gradients_reach_context_not_encoder(clip_encoder):
    torch.manual_seed(0)                  # mapping-net dropout
    head = _head(clip_encoder)
    head.train()
    assert head.training and head.mapping.training
    assert not any(m.training for m in head.text_encoder.modules())
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(8, 5, 2, 3, generator=g).relu().requires_grad_()
    labels = torch.tensor([3, 1, 1, 0, 2, 3, 0, 1])
    parts = head.losses(feats, labels)
    assert set(parts) == {"mm", "ot"} and all(v.dim() == 0 for v in parts.values())
    head.combine(parts).backward()
    assert head.prompt_learner.ctx.grad.abs().sum() > 0
    assert head.logit_scale.grad is not None
    assert all(p.grad is not None for p in head.mapping.parameters())
    assert feats.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.text_encoder.parameters())
    assert all(not p.requires_grad for p in head.text_encoder.parameters())


def test_head_losses_are_lico_md_formulas(clip_encoder):
    head = _head(clip_encoder, alpha=10.0, beta=1.0).eval()        # eval: dropout off
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 5, 2, 3, generator=g)
    labels = torch.tensor([2, 0, 0, 3, 1, 2])
    parts = head.losses(feats, labels)
    # Every class is in the batch, so losses() encodes the same prompts as prompt_learner()
    # (no padding trimmed) and both sides below run the same operations on the same values
    # and shapes in one process: bitwise equal (same seed, same numbers).
    assert torch.equal(torch.unique(labels), torch.arange(len(NAMES)))
    with torch.no_grad():
        t, s = head.prompt_learner()
        mm = manifold_matching_loss(feats.mean((2, 3)), s[labels], head.logit_scale)
        ot = ot_loss(feats, head.mapping(t[labels]))              # t[labels]: [B, M, D]
    assert parts["mm"].item() == mm.item()
    assert parts["ot"].item() == ot.item()
    # combine: 2 float32 terms (alpha * mm, + ot) vs the float64 sum of the same values.
    want = 10 * mm.item() + ot.item()
    assert abs(head.combine(parts).item() - want) <= f32_tol(2, 10 * abs(mm.item()) + abs(ot.item()))
    # ln(1/0.07) rounded once to float32
    assert abs(head.logit_scale.item() - math.log(1 / 0.07)) <= EPS32 / 2 * math.log(1 / 0.07)


def test_head_checks_feature_size(clip_encoder):
    head = _head(clip_encoder)
    with pytest.raises(ValueError, match="h\\*w = 6"):
        head.losses(torch.randn(2, 5, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels outside"):
        head.losses(torch.randn(2, 5, 2, 3), torch.tensor([0, 4]))


def test_trainable_parameters_and_state_dict(clip_encoder):
    head = _head(clip_encoder, seed=0)
    params = head.trainable_parameters()
    enc_ids = {id(p) for p in clip_encoder.parameters()}
    assert not any(id(p) in enc_ids for p in params)
    assert sum(p.numel() for p in params) == (
        head.prompt_learner.ctx.numel() + sum(p.numel() for p in head.mapping.parameters()) + 1)
    assert len(_head(clip_encoder, learn_tau=False).trainable_parameters()) == len(params) - 1
    state = head.trainable_state_dict()
    assert set(state) == {"logit_scale", "prompt_learner.ctx", "mapping.net.0.weight",
                          "mapping.net.0.bias", "mapping.net.3.weight", "mapping.net.3.bias"}
    assert not any("text_encoder" in k for k in head.state_dict())
    other = _head(clip_encoder, seed=1)
    assert not torch.equal(other.prompt_learner.ctx, head.prompt_learner.ctx)
    other.load_trainable_state_dict(state)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k])
    with pytest.raises(RuntimeError):                     # still strict about real keys
        other.load_trainable_state_dict({**state, "bogus": torch.zeros(1)})


def test_same_generator_same_init(clip_encoder):
    a, b = _head(clip_encoder, seed=5), _head(clip_encoder, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_mapping_net_layout():
    net = MappingNet(10, 16, generator=torch.Generator().manual_seed(0))
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Linear", "Dropout", "ReLU", "Linear"]
    assert net.net[1].p == 0.5 and net(torch.randn(3, 4, 10)).shape == (3, 4, 16)


def test_head_on_a_real_backbone_leaves_classifier_state_alone(clip_encoder):
    from lico_bench.models.backbones import wide_resnet

    torch.manual_seed(0)
    clf = wide_resnet(10, 1, num_classes=len(NAMES))          # F: [B, 64, 8, 8]
    keys_before = set(clf.state_dict())
    head = LicoHead(clip_encoder, NAMES, feat_hw=64, n_ctx=2,
                    generator=torch.Generator().manual_seed(0)).train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    feats = clf.forward_features(x)
    loss = torch.nn.functional.cross_entropy(clf.head(feats), y) + head.combine(head.losses(feats, y))
    loss.backward()
    assert clf.features.conv1.weight.grad.abs().sum() > 0
    assert set(clf.state_dict()) == keys_before


def _grads(head, feats, labels):
    """Gradients of combine(losses) w.r.t. feats and every trainable head parameter."""
    feats = feats.clone().requires_grad_()
    parts = head.losses(feats, labels)
    head.combine(parts).backward()
    return parts, feats.grad, {n: p.grad for n, p in head.named_parameters() if p.requires_grad}


def test_variants_train_only_their_terms(clip_encoder):
    """ot_grad='none' (released code) and beta=0 (MM only) give the same gradients; the
    first still reports L_OT. alpha=0 (OT only) freezes the temperature."""
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(6, 5, 2, 3, generator=g).relu()
    labels = torch.tensor([2, 0, 0, 3, 1, 2])
    released = _head(clip_encoder, ot_grad="none").eval()
    mmonly = _head(clip_encoder, beta=0.0).eval()
    paper = _head(clip_encoder).eval()
    otonly = _head(clip_encoder, alpha=0.0).eval()
    assert not any(p.requires_grad for p in released.mapping.parameters())
    assert not any(p.requires_grad for p in mmonly.mapping.parameters())
    assert not otonly.logit_scale.requires_grad and otonly.prompt_learner.ctx.requires_grad
    p_rel, f_rel, g_rel = _grads(released, feats, labels)
    p_mm, f_mm, g_mm = _grads(mmonly, feats, labels)
    p_pap, f_pap, _ = _grads(paper, feats, labels)
    p_ot, f_ot, g_ot = _grads(otonly, feats, labels)
    # The heads share the encoder and (same seed) their initial weights; every class is in
    # the batch. L_OT of released and paper, and the L_MM gradients of released and mmonly,
    # are the same operations on the same values and shapes in one process: bitwise equal.
    assert torch.equal(torch.unique(labels), torch.arange(len(NAMES)))
    assert p_rel["ot"].item() == p_pap["ot"].item() and p_rel["ot"] > 0
    assert p_mm["ot"].item() == 0 and p_ot["mm"].item() == 0
    assert torch.equal(f_rel, f_mm)
    assert set(g_rel) == set(g_mm) == {"logit_scale", "prompt_learner.ctx"}
    for n in g_rel:
        assert torch.equal(g_rel[n], g_mm[n]), n
    # paper's feats gradient is autograd's sum of the two terms' gradients: f_mm + f_ot in
    # another order, 2 terms per element (magnitude |f_mm| + |f_ot|, elementwise).
    bound = f32_tol(2, 1.0) * (f_mm.abs() + f_ot.abs())
    assert ((f_pap - f_mm).abs() > bound).any()                  # OT does add a gradient
    assert set(g_ot) == {"prompt_learner.ctx", "mapping.net.0.weight", "mapping.net.0.bias",
                         "mapping.net.3.weight", "mapping.net.3.bias"}
    assert_within(f_pap, f_mm + f_ot, bound)                     # the terms add



@pytest.mark.parametrize("ot_grad", ["cost", "full", "none"])
def test_ot_grad_modes_through_the_head(clip_encoder, ot_grad):
    """LicoHead's ot_grad (its docstring, LICO.md): "cost" - the gradient of L_OT is that of
    sum(pi C) with the plan pi a constant; "full" - also through the Sinkhorn iterations
    (the plan's own gradient: not the same numbers); "none" - the value only, no graph,
    the mapping net frozen. Checked against ot_loss on the very text maps the head made."""
    g = torch.Generator().manual_seed(9)
    feats = torch.randn(5, 5, 2, 3, generator=g).relu().requires_grad_()
    labels = torch.tensor([1, 0, 3, 1, 2])
    head = _head(clip_encoder, ot_grad=ot_grad).eval()                # eval: no dropout
    seen = []
    head.mapping.register_forward_hook(lambda m, i, out: seen.append(out))
    ot = head.losses(feats, labels)["ot"]
    (txt_maps,) = seen                                                # [B, M, h*w]
    kw = dict(eps=head.ot_eps, max_iter=head.ot_max_iter, tol=head.ot_tol)
    ref = {fg: ot_loss(feats, txt_maps, full_grad=fg, **kw) for fg in (False, True)}
    # the same function on the same tensors: the same value whatever the gradient mode
    assert ot.item() == ref[False].item() == ref[True].item() > 0
    if ot_grad == "none":
        assert not ot.requires_grad and not txt_maps.requires_grad
        assert not any(p.requires_grad for p in head.mapping.parameters())
        return
    got = torch.autograd.grad(ot, (feats, txt_maps))
    want = {fg: torch.autograd.grad(ref[fg], (feats, txt_maps)) for fg in (False, True)}
    for a, b in zip(got, want[ot_grad == "full"]):
        assert torch.equal(a, b)                                      # identical computation
    # "full" and "cost" differ by far more than rounding could move them: float32, up to
    # 100 Sinkhorn iterations of two 13-term sums (M = 5 here) of terms <= 4 (costs between
    # unit vectors), forward and backward: f32_tol(13, 4, depth=400) ~ 2.5e-3 relative
    for a, b in zip(want[True], want[False]):
        scale = b.abs().max().item()
        assert (a - b).abs().max().item() > 10 * f32_tol(13, 4.0, depth=400) * scale


def test_unknown_ot_grad_or_targets_is_user_error(clip_encoder):
    with pytest.raises(UserError, match="ot_grad"):
        _head(clip_encoder, ot_grad="some")
    with pytest.raises(UserError, match="text targets"):
        _head(clip_encoder, targets="pooled")

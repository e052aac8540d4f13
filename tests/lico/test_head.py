"""Prompt learner and LicoHead on the tiny CLIP tower: rolled contexts, label order,
gradients reach the context and never the frozen encoder, checkpoint contents."""
import math

import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.lico import (LicoHead, MappingNet, PromptLearner, manifold_matching_loss,
                             ot_loss, prompt_text)

NAMES = ["ship", "cat", "dog", "a cat"]     # deliberately not alphabetical


def _head(enc, seed=0, **kw):
    return LicoHead(enc, NAMES, feat_hw=6, n_ctx=4, generator=torch.Generator().manual_seed(seed),
                    **kw)


def test_prompt_shapes_rolls_and_label_order(clip_encoder):
    enc = clip_encoder
    pl = PromptLearner(enc, NAMES, n_ctx=4, generator=torch.Generator().manual_seed(0))
    assert pl.ctx.shape == (4, enc.token_dim) and pl.num_prompts == 4
    assert abs(pl.ctx.std().item() - 0.02) < 0.005
    ctxs = pl.contexts()
    for i in range(4):
        assert torch.equal(ctxs[i], torch.roll(pl.ctx, i, dims=0))
    t = pl()
    assert t.shape == (len(NAMES), 4, enc.width) and t.dtype == torch.float32
    # Row k, copy i is exactly "<sot> roll(ctx, i) <name k> . <eot>" through the encoder.
    for k, name in enumerate(NAMES):
        ids, mask = enc.tokenize([prompt_text(name)])
        emb = enc.embed(ids)
        for i in range(4):
            seq = torch.cat([emb[:, :1], torch.roll(pl.ctx, i, 0)[None], emb[:, 1:]], dim=1)
            full_mask = torch.cat([torch.ones(1, 4, dtype=torch.long), mask], dim=1)
            torch.testing.assert_close(t[k, i], enc(seq, full_mask)[0], rtol=1e-5, atol=1e-6)
    # The M copies are distinct vectors (the released code's copies were identical).
    d = torch.cdist(t.reshape(-1, enc.width), t.reshape(-1, enc.width))
    assert (d + torch.eye(d.shape[0]) * 1e9).min() > 1e-4


def test_prompt_subset_equals_rows_of_full(clip_encoder):
    pl = PromptLearner(clip_encoder, NAMES, n_ctx=3, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 2])          # shortest names: the padding gets trimmed
    torch.testing.assert_close(pl(classes), pl()[classes], rtol=1e-5, atol=1e-6)


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
    with torch.no_grad():
        t = head.prompt_learner()[labels]                         # [B, M, D]
        mm = manifold_matching_loss(feats.mean((2, 3)), t[:, 0], head.logit_scale)
        ot = ot_loss(feats, head.mapping(t))
    assert parts["mm"].item() == pytest.approx(mm.item(), rel=1e-4, abs=1e-7)
    assert parts["ot"].item() == pytest.approx(ot.item(), rel=1e-5)
    assert head.combine(parts).item() == pytest.approx(10 * mm.item() + ot.item(), rel=1e-4)
    assert head.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


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

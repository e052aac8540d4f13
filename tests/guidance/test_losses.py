"""LICO's peers' loss terms (lico_bench.guidance) against independent computations written
here: the Energy loss on hand-made maps, model guidance and RRR against plain autograd loops
over one image at a time in float64, saliency-guided masking on a hand-made gradient, the KL
term by hand; and that every term's gradient reaches the weights."""
import copy

import pytest
import torch
import torch.nn.functional as F

from lico_bench import create_model
from lico_bench.guidance import (GuidanceLoss, energy_loss, guided_loss, rrr_penalty, sgt_kl,
                                 sgt_masked_input)
from tests.tolerance import f32_tol


def test_energy_loss_on_hand_made_maps():
    attr = torch.tensor([[[3.0, -1.0], [1.0, 0.0]],      # positive sum 4, 3 of it in the mask
                         [[3.0, -1.0], [1.0, 0.0]],      # the same map, the other mask: 1 of 4
                         [[-2.0, 0.0], [-0.5, 0.0]],     # no positive attribution at all
                         [[0.0, 0.0], [0.0, 6.0]]])      # all of it in the mask
    masks = torch.tensor([[[True, False], [False, False]],
                          [[False, True], [True, True]],
                          [[True, True], [False, False]],
                          [[False, False], [False, True]]])
    # 1 - 3/4, 1 - 1/4, empty map: 1 - 0, 1 - 6/6; each a few exact binary operations
    assert energy_loss(attr, masks).tolist() == [0.25, 0.75, 1.0, 0.0]


def _tiny(family="guided", seed=0):
    torch.manual_seed(seed)
    return create_model(f"{family}_tiny", 10).eval()


def _batch(seed=1, B=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (B,), generator=g)
    masks = torch.zeros(B, 32, 32, dtype=torch.bool)
    for i in range(B):                    # a square object per image, at a different place
        masks[i, 4 + 3 * i:16 + 3 * i, 6 + 2 * i:20 + 2 * i] = True
    return x, y, masks


def test_guided_loss_matches_a_plain_loop_over_single_images():
    model = _tiny()
    x, y, masks = _batch()
    use = torch.tensor([True, False, True, True])
    feats = model.forward_features(x)
    got = guided_loss(feats, model.head(feats), y, masks, use)

    # Independent: one image at a time, float64, Grad-CAM written out (Selvaraju Eq. 1-2),
    # upsampled, and the Energy ratio computed from its definition.
    ref_model = copy.deepcopy(model).double()
    want = 0.0
    for i in range(len(x)):
        if not use[i]:
            continue
        f = ref_model.forward_features(x[i:i + 1].double())            # [1, C, h, w]
        z = ref_model.head(f)[0, y[i]]
        (g,) = torch.autograd.grad(z, f)
        alpha = g[0].mean(dim=(1, 2))                                  # [C]
        cam = torch.relu((alpha[:, None, None] * f[0]).sum(0))         # [h, w]
        cam = F.interpolate(cam[None, None], size=(32, 32), mode="bilinear",
                            align_corners=False)[0, 0]
        pos = cam.clamp(min=0)
        want += 1 - float((pos[masks[i]].sum() / pos.sum()).detach())
    # float32 against float64 (computations=1): the longest accumulation is the 32 x 32 sum
    # of the upsampled map; the value passes through conv1, conv2, GAP, fc, their backward
    # to F, the channel mean and sum, the upsampling and the two sums (depth 10), each
    # image's ratio in [0, 1] (magnitude 1 per image, 3 images).
    tol = f32_tol(1024, 3.0, depth=10, computations=1)
    assert abs(got.item() - want) <= tol, (got.item(), want, tol)
    assert want > 0.5                      # the images are not already explained in the mask


def test_rrr_penalty_matches_a_plain_loop_over_single_images():
    model = _tiny("rrr")
    x, y, masks = _batch(seed=2)
    xg = x.clone().requires_grad_(True)
    got = rrr_penalty(xg, model(xg), masks)

    ref_model = copy.deepcopy(model).double()
    per_image = []
    for i in range(len(x)):
        xi = x[i:i + 1].double().requires_grad_(True)
        logp = torch.log_softmax(ref_model(xi), dim=1)
        (g,) = torch.autograd.grad(logp.sum(), xi)                     # d sum_k log p_k / dx
        outside = ~masks[i]
        per_image.append(float((g[0][:, outside] ** 2).sum()))       # every channel off the mask
    want = sum(per_image) / len(x)
    # float32 against float64: 3 x 32 x 32 squared terms summed (n 3072), each gradient
    # through the forward and backward of 4 layers (depth 8); squaring doubles the relative
    # error (factor 2); magnitude: the sum of the positive terms, the value itself.
    tol = 2 * f32_tol(3072, want, depth=8, computations=1)
    assert abs(got.item() - want) <= tol, (got.item(), want, tol)
    assert want > 0

    # the share option's use: images left out add nothing, the mean is still over B
    use = torch.tensor([True, False, False, True])
    xg = x.clone().requires_grad_(True)
    part = rrr_penalty(xg, model(xg), masks, use)
    want_part = (per_image[0] + per_image[3]) / len(x)
    assert abs(part.item() - want_part) <= 2 * f32_tol(3072, want_part, depth=8, computations=1)


def test_sgt_masking_on_a_hand_made_gradient():
    # one image, 2 channels, 2 x 2 pixels; channel means of the gradient:
    # [[2, -1], [0.5, -2]] -> |.| [[2, 1], [0.5, 2]]
    grad = torch.tensor([[[[4.0, -1.0], [0.5, 2.0]],
                          [[0.0, -1.0], [0.5, -6.0]]]])
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                       [[-1.0, 0.0], [5.0, 7.0]]]])
    u = torch.rand(1, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    lo = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)                   # each channel's range
    hi = torch.tensor([4.0, 7.0]).view(1, 2, 1, 1)
    rand = lo + (hi - lo) * u

    # k = 0.5 of 4 pixels = 2 with the lowest |mean|: (1, 0) at 0.5 and (0, 1) at 1
    xm, masked = sgt_masked_input(x, grad, 0.5, torch.Generator().manual_seed(3), "abs")
    assert masked.tolist() == [[[False, True], [True, False]]]
    want = torch.where(masked[:, None], rand, x)
    assert torch.equal(xm, want)
    assert torch.equal(xm[:, :, 0, 0], x[:, :, 0, 0]) and torch.equal(xm[:, :, 1, 1], x[:, :, 1, 1])
    assert ((xm >= lo) & (xm <= hi)).all()
    # signed ranking (their code without --abs): the lowest means -2 at (1, 1), -1 at (0, 1)
    xs, masked_s = sgt_masked_input(x, grad, 0.5, torch.Generator().manual_seed(3), "signed")
    assert masked_s.tolist() == [[[False, True], [False, True]]]
    assert torch.equal(xs, torch.where(masked_s[:, None], rand, x))
    # at least one pixel, whatever k
    _, one = sgt_masked_input(x, grad, 0.01, torch.Generator().manual_seed(3))
    assert one.tolist() == [[[False, False], [True, False]]]


def test_sgt_kl_by_hand():
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    b = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    p = torch.softmax(a.double(), 1)
    q = torch.softmax(b.double(), 1)
    want = float((p * (p.log() - q.log())).sum() / 2)        # KL(p || q), batch mean
    got = sgt_kl(a, b).item()
    # 3 classes per KL sum, 2 images, log-softmax rounding of logits <= 3 (magnitude 2 * 3 * 4)
    assert abs(got - want) <= f32_tol(6, 24.0, depth=3, computations=1), (got, want)
    assert sgt_kl(a, a).item() == 0.0                          # log p - log p, exactly


SETTINGS = {"guided": {"guided_lambda": 1.0, "guided_share": 1.0},
            "rrr": {"rrr_lambda": 1000.0},
            "sgt": {"sgt_k": 0.5, "sgt_lambda": 1.0, "sgt_rank": "abs"}}


@pytest.mark.parametrize("family", ["guided", "rrr", "sgt"])
def test_each_term_reaches_the_weights(family):
    torch.manual_seed(0)
    model = create_model(f"{family}_tiny", 10).train()
    x, y, masks = _batch(seed=4, B=8)
    loss = GuidanceLoss(family, SETTINGS[family])
    logits, parts = loss.forward(model, x, y, masks, None, torch.Generator().manual_seed(0))
    assert logits.shape == (8, 10) and parts["guide"].ndim == 0
    term = loss.combine(parts)
    assert term.item() > 0
    term.backward()                                    # the extra term alone, no CE
    for name in ("features.conv1.weight", "features.conv2.weight", "fc.weight"):
        g = model.get_parameter(name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, (family, name)


def test_guided_term_is_zero_without_annotated_images():
    model = _tiny()
    x, y, masks = _batch()
    feats = model.forward_features(x)
    none = torch.zeros(len(x), dtype=torch.bool)
    assert guided_loss(feats, model.head(feats), y, masks, none).item() == 0.0


def test_guidance_weight_is_the_familys_lambda():
    t = torch.tensor(0.5)
    assert GuidanceLoss("rrr", {"rrr_lambda": 1000.0}).combine({"guide": t}).item() == 500.0
    assert GuidanceLoss("guided", SETTINGS["guided"]).combine({"guide": t}).item() == 0.5

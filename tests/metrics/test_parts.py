"""Part importance by intervention: hand-built cases with known answers, and the rank
correlation against scipy."""
import math

import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from lico_bench import UserError
from lico_bench.metrics import (PartScenes, create_metric, masked_spearman, part_energy,
                                part_importance, top_part_hit)

from ..tolerance import EPS64, f32_tol


def test_masked_spearman_matches_scipy_with_ties_and_missing_parts():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (200, 5), generator=g).float()        # many ties
    y = torch.randn(200, 5, generator=g)
    y[::3, 1] = y[::3, 2]                                         # ties on the other side too
    present = torch.rand(200, 5, generator=g) < 0.8
    rho = masked_spearman(x, y, present)
    n_checked = 0
    for i in range(200):
        k = present[i]
        if k.sum() < 2 or x[i, k].unique().numel() < 2 or y[i, k].unique().numel() < 2:
            assert math.isnan(rho[i])
            continue
        ref = spearmanr(x[i, k].numpy(), y[i, k].numpy()).statistic
        # exact ranks (half-integers <= 5); float64 on both sides: 3 accumulations in
        # sequence (mean, squares, dot) of <= 5 terms at |rho|'s scale times max rank / sd
        # <= 5 / 0.5 = 10 (the smallest sd of non-constant ranks of <= 5 entries is 1/2);
        # then our one float32 rounding of |rho| <= 1
        tol = f32_tol(5, 10.0, depth=3, eps=EPS64) + f32_tol(1, 1.0, computations=1)
        assert abs(rho[i].item() - ref) <= tol
        n_checked += 1
    assert n_checked > 100


def test_top_part_hit_by_hand():
    energy = torch.tensor([[5.0, 1.0, 0.0], [1.0, 5.0, 0.0], [0.0, 0.0, 0.0], [1.0, 9.0, 2.0]])
    imp = torch.tensor([[0.5, 0.1, 0.0], [0.5, 0.1, 0.0], [0.5, 0.1, 0.0], [0.3, 0.9, 0.3]])
    present = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, False, True]])
    out = top_part_hit(energy, imp, present)
    # row 3: part 1 is absent, so the most energetic present part is 2, tied most important
    assert out[:2].tolist() == [1.0, 0.0] and math.isnan(out[2]) and out[3] == 1.0


def test_a_map_that_ties_parts_gets_no_free_hit():
    """Energy tied over k parts: the hit is the share of them that are most important (the
    expected hit of a random pick), so a uniform map cannot score by the order of the parts."""
    imp = torch.tensor([[0.9, 0.1, 0.0, 0.0]] * 3)
    present = torch.tensor([[True] * 4, [True] * 4, [True, True, False, False]])
    energy = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 1.0, 0.0], [3.0, 3.0, 9.0, 9.0]])
    # row 0: 4 tied, 1 of them most important -> 1/4; row 1: 2 tied -> 1/2; row 2: parts 2, 3
    # absent, the two present ones tied -> 1/2
    assert top_part_hit(energy, imp, present).tolist() == [0.25, 0.5, 0.5]
    # importance tied too: both top-energy parts are most important -> 1
    both = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert top_part_hit(energy[1:2], both, present[1:2]).tolist() == [1.0]


def test_energy_is_per_pixel_by_default_so_part_size_does_not_score():
    """A uniform map over parts of 16 and 4 pixels: the sums favour the large part, the
    means tie; part_hit of a uniform map is then 1/2 (not 1) and part_rank undefined."""
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, :4, :4] = True          # 16 px
    masks[0, 1, 6:, 6:] = True          # 4 px
    uniform = torch.full((1, 8, 8), 0.5)
    assert part_energy(uniform, masks, "sum").tolist() == [[8.0, 2.0]]
    assert part_energy(uniform, masks).tolist() == [[0.5, 0.5]]
    imp, present = torch.tensor([[0.7, 0.1]]), torch.ones(1, 2, dtype=torch.bool)
    assert top_part_hit(part_energy(uniform, masks), imp, present).tolist() == [0.5]
    assert top_part_hit(part_energy(uniform, masks, "sum"), imp, present).tolist() == [1.0]
    assert math.isnan(masked_spearman(part_energy(uniform, masks), imp, present)[0])
    # a map twice as dense on the small part ranks it first under means, not under sums
    m = uniform.clone()
    m[0, 6:, 6:] = 1.0
    assert part_energy(m, masks).tolist() == [[0.5, 1.0]]
    assert part_energy(m, masks, "sum").tolist() == [[8.0, 4.0]]


class RegionModel(nn.Module):
    """Looks only at the top-left 4x4 block of channel 0: logits (s, -s, 0), s = 4 * mean."""

    def forward(self, x):
        s = 4 * x[:, 0, :4, :4].mean(dim=(1, 2))
        return torch.stack([s, -s, torch.zeros_like(s)], dim=1)


def _scene():
    """One 8x8 image, parts: A = the top-left 4x4 block (what the model reads), B = the
    bottom-right 4x4 block; removing a part sets its pixels to 0 (the background)."""
    img = torch.zeros(1, 3, 8, 8)
    img[:, :, :4, :4] = 1.0
    img[:, :, 4:, 4:] = 2.0
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, :4, :4] = True
    masks[0, 1, 4:, 4:] = True
    removed = img.unsqueeze(1).repeat(1, 2, 1, 1, 1)
    removed[0, 0][:, masks[0, 0]] = 0.0
    removed[0, 1][:, masks[0, 1]] = 0.0
    return img, PartScenes(masks, removed)


def test_a_model_reading_one_region_gives_that_part_all_the_importance():
    img, parts = _scene()
    t = torch.tensor([0])
    imp = part_importance(RegionModel(), img, parts.removed, t)
    # softmax(4, -4, 0)[0] with the part, softmax(0, 0, 0)[0] = 1/3 without part A
    p_full = torch.softmax(torch.tensor([4.0, -4.0, 0.0]), 0)[0].item()
    # logits exact (4 * mean of 16 ones); three float32 softmaxes over 3 classes (the test's,
    # ours with and without the part; each 2 gamma_{K+2}-ish, one exp, 3-term sum and a
    # division) and the subtraction: gamma_6 of magnitude 1, three computations
    assert abs(imp[0, 0].item() - (p_full - 1 / 3)) <= f32_tol(6, 1.0, computations=3)
    assert imp[0, 1].item() == 0.0
    logit = part_importance(RegionModel(), img, parts.removed, t, score="logit")
    assert logit.tolist() == [[4.0, 0.0]]


@pytest.mark.parametrize("part,rank,hit", [(0, 1.0, 1.0), (1, -1.0, 0.0)])
def test_a_map_equal_to_a_part_mask(part, rank, hit):
    img, parts = _scene()
    maps = parts.masks[:, part].float()
    assert part_energy(maps, parts.masks).tolist()[0][part] == 1.0
    assert part_energy(maps, parts.masks, "sum").tolist()[0][part] == 16.0
    model, t = RegionModel(), torch.tensor([0])
    assert create_metric("part_rank")(model, img, maps, t, parts=parts).values.tolist() == [rank]
    assert create_metric("part_hit")(model, img, maps, t, parts=parts).values.tolist() == [hit]


def test_part_metric_without_parts_or_bad_option_is_a_one_line_error():
    img, parts = _scene()
    with pytest.raises(UserError, match="re-rendered without each part"):
        create_metric("part_rank")(RegionModel(), img, parts.masks[:, 0].float())
    with pytest.raises(UserError, match="must be 'prob' or 'logit'"):
        create_metric("part_hit", score="margin")
    with pytest.raises(UserError, match="must be 'mean' or 'sum'"):
        create_metric("part_rank", energy="max")

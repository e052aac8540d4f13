"""Cross-seed agreement (lico_bench.metrics.agreement) against a plain loop over seed pairs with
scipy's Spearman, and by construction: identical seeds agree exactly, a map that does not
depend on the image has its defined value, seeds with unrelated maps do not agree."""
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy import stats

from lico_bench.metrics import seed_agreement, ssim
from lico_bench.metrics.similarity import minmax
from tests.tolerance import EPS64, gamma


def _maps(s, n, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(s, n, h, w, generator=g)


def test_against_a_plain_loop_over_every_pair_of_seeds():
    maps = _maps(4, 5)
    maps[2, 1] = maps[0, 1].round(decimals=1)              # ties in some maps
    got = seed_agreement(maps)
    for i in range(5):
        rhos, sss = [], []
        for a, b in combinations(range(4), 2):             # 6 pairs, each once, never (a, a)
            rhos.append(stats.spearmanr(maps[a, i].flatten().numpy(),
                                        maps[b, i].flatten().numpy()).statistic)
            sss.append(float(ssim(minmax(maps[a, i][None]), minmax(maps[b, i][None]))[0]))
        # Spearman: exact integer rank sums here, then a float64 division and a mean of 6;
        # scipy computes in float64 from ranks: both within a few float64 roundings of the
        # true value (|rho| <= 1): gamma_8(EPS64) per side
        assert abs(float(got["spearman"][i]) - np.mean(rhos)) <= 2 * gamma(8, EPS64)
        # SSIM: the same kernel per pair; only the mean over 6 pairs is summed in another
        # order (values <= 1)
        assert abs(float(got["ssim"][i]) - np.mean(sss)) <= 2 * gamma(6, EPS64)


def test_identical_seeds_agree_exactly():
    one = _maps(1, 6)
    got = seed_agreement(one.expand(3, -1, -1, -1))
    assert got["spearman"].tolist() == [1.0] * 6           # integer rank sums: exact
    # SSIM of a map with itself: numerator and denominator are the same products, computed
    # in another order: 1 within float64 rounding of a handful of operations on values ~1
    assert torch.all((got["ssim"] - 1).abs() <= 8 * EPS64)


def test_unrelated_seeds_do_not_agree():
    got = seed_agreement(_maps(3, 20, seed=1))             # independent noise per seed
    # 144 pixels: the Spearman correlation of independent maps has sd 1/sqrt(143) ~ 0.084;
    # the mean over 3 pairs x 20 images is within 5 sd of 0 (~ 0.05)
    assert abs(float(got["spearman"].mean())) < 5 / np.sqrt(143 * 60)
    assert float(got["ssim"].mean()) < 0.5


def test_a_map_independent_of_the_image_has_the_defined_values():
    """The same template for every image under every seed agrees perfectly (1): agreement
    alone cannot tell a template from an explanation (map dependence can). A constant map:
    Spearman 1 between two constant maps, 0 against a non-constant one; SSIM of two constant
    maps 1 (both normalise to zeros)."""
    template = _maps(1, 1)[0, 0]
    got = seed_agreement(template.expand(2, 4, 12, 12))
    assert got["spearman"].tolist() == [1.0] * 4
    const = torch.zeros(2, 3, 12, 12)
    c = seed_agreement(const)
    assert c["spearman"].tolist() == [1.0] * 3 and c["ssim"].tolist() == [1.0] * 3
    mixed = torch.stack([torch.zeros(3, 12, 12), _maps(1, 3)[0]])
    assert seed_agreement(mixed)["spearman"].tolist() == [0.0] * 3


def test_maps_smaller_than_the_ssim_window_give_nan_ssim_and_bad_shapes_raise():
    got = seed_agreement(_maps(2, 3, 4, 4))
    assert torch.isnan(got["ssim"]).all() and torch.isfinite(got["spearman"]).all()
    with pytest.raises(ValueError):
        seed_agreement(_maps(1, 3))

"""Map dependence (lico_bench.metrics.dependence): hand-computed values, cases known by
construction (one template -> 1, a one-hot object at a new place in every image -> a small
negative value derived by hand), and a plain numpy reference loop."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lico_bench.metrics import dependence
from lico_bench.metrics.dependence import map_dependence, pool_maps
from tests.tolerance import f32_tol

from ..tolerance import EPS64, f32_tol


def dep_tol(maps: torch.Tensor) -> float:
    """Bound on |map_dependence - a float64 or exact reference| for these maps [N, h, w].

    Both compute in float64: 4 accumulations in sequence (mean, norm, sum over the N maps,
    dot product) of at most P + N terms, each at the scale of |r| <= 1 (Cauchy-Schwarz)
    times the maps' conditioning max|m| / sd (the error of m - mean relative to sd; constant
    maps are NaN and left out); then ours rounds |r| <= 1 once to float32.
    """
    m = maps.double().flatten(1)
    sd = m.std(1, unbiased=False)
    cond = float((m.abs().amax(1)[sd > 0] / sd[sd > 0]).max())
    return (f32_tol(m.shape[1] + m.shape[0], cond, depth=4, eps=EPS64)
            + f32_tol(1, 1.0, computations=1))


def test_hand_computed_three_maps():
    # Class 0: a = [0, 1, 2], b = [0, 2, 4] (a scaled copy), c = [2, 1, 0] (reversed).
    # Standardised: a = b = (-1, 0, 1)/sqrt2, c = (1, 0, -1)/sqrt2.
    #   a vs mean(b, c) = 0 vector -> undefined (NaN); same for b.
    #   c vs mean(a, b) = (-1, 0, 1)/sqrt2 -> pearson = -1.
    maps = torch.tensor([[[0., 1., 2.]], [[0., 2., 4.]], [[2., 1., 0.]]])
    got = map_dependence(maps, torch.tensor([0, 0, 0]))
    assert math.isnan(got[0]) and math.isnan(got[1]) and abs(got[2].item() + 1) <= dep_tol(maps)
    # With a fourth map d = [0, 0, 1]: a vs mean(z_b, z_c, z_d) = z_d / 3 (b and c cancel);
    # z_d = (-1, -1, 2)/sqrt6, pearson((-1, 0, 1), (-1, -1, 2)) = 3 / (sqrt2 * sqrt6).
    maps4 = torch.cat([maps, torch.tensor([[[0., 0., 1.]]])])
    got4 = map_dependence(maps4, torch.tensor([0, 0, 0, 0]))
    assert abs(got4[0].item() - 3 / math.sqrt(12)) <= dep_tol(maps4)
    assert abs(got4[1].item() - 3 / math.sqrt(12)) <= dep_tol(maps4)


def test_one_template_for_every_image_is_one():
    g = torch.Generator().manual_seed(0)
    template = torch.rand(8, 8, generator=g)
    scale = torch.rand(12, 1, 1, generator=g) * 100 + 0.01      # raw CAM scales differ
    maps = template * scale + torch.randn(12, 1, 1, generator=g)  # and offsets
    classes = torch.tensor([0, 1] * 6)
    # 1 up to the float32 rounding of the maps themselves (the product and the sum: 2
    # roundings of each pixel, relative to max|m|, i.e. cond relative to sd) in each of the
    # two standardised vectors the correlation compares, plus dep_tol
    m = maps.double().flatten(1)
    cond = float((m.abs().amax(1) / m.std(1, unbiased=False)).max())
    tol = 2 * f32_tol(2, cond, computations=1) + dep_tol(maps)
    assert (map_dependence(maps, classes).double() - 1).abs().max() <= tol


def test_maps_following_a_moving_object_are_low():
    """One-hot maps at distinct pixels: the others' mean is 0 where this map peaks."""
    n, side = 10, 6
    maps = torch.zeros(n, side, side)
    for i in range(n):
        maps[i].view(-1)[(i * 7) % (side * side)] = 1.0        # 10 distinct pixels of 36
    got = map_dependence(maps, torch.zeros(n, dtype=torch.long))
    p, k = side * side, n - 1
    # pearson(e_a, sum of k other one-hots) with e_a . e_b = 0: cov = -k/P, the variances
    # (1 - 1/P) and k(1 - k/P), all over P; so r = -sqrt(k) / sqrt((P - 1)(P - k)).
    want = -math.sqrt(k) / math.sqrt((p - 1) * (p - k))
    assert (got.double() - want).abs().max() <= dep_tol(maps)
    # a blob that moves gives a low value too, far below a fixed template's 1
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing="ij")
    g = torch.Generator().manual_seed(1)
    centres = torch.randint(2, 14, (20, 2), generator=g).float()
    blobs = torch.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 4)
    assert map_dependence(blobs, torch.zeros(20, dtype=torch.long)).mean() < 0.3


def test_undefined_cases_are_nan_and_classes_are_separate():
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(5, 4, 4, generator=g)
    maps[3] = 7.0                                              # constant map
    classes = torch.tensor([0, 0, 1, 0, 2])                    # class 1 and 2: one image each
    got = map_dependence(maps, classes)
    assert math.isnan(got[2]) and math.isnan(got[4]) and math.isnan(got[3])
    # images 0 and 1: the constant map 3 adds nothing, so each is compared with the other
    want = np.corrcoef(maps[0].flatten().numpy(), maps[1].flatten().numpy())[0, 1]
    tol = dep_tol(maps[:2])
    assert abs(got[0].item() - want) <= tol and abs(got[1].item() - want) <= tol


def test_matches_a_plain_numpy_loop():
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(30, 5, 7, generator=g) ** 3
    classes = torch.randint(0, 4, (30,), generator=g)
    got = map_dependence(maps, classes).numpy()
    tol = dep_tol(maps)
    m = maps.double().flatten(1).numpy()
    z = (m - m.mean(1, keepdims=True)) / m.std(1, keepdims=True)
    for i in range(30):
        others = [j for j in range(30) if j != i and classes[j] == classes[i]]
        if not others:
            assert np.isnan(got[i])
            continue
        ref = np.corrcoef(m[i], z[others].mean(0))[0, 1]
        assert abs(got[i] - ref) <= tol, i


def test_pool_maps_area_average_and_small_maps_unchanged():
    maps = torch.arange(2 * 64 * 64, dtype=torch.float32).reshape(2, 64, 64)
    pooled = pool_maps(maps, grid=32)
    assert pooled.shape == (2, 32, 32)
    # exact: 4 integers < 2**13 sum exactly in float32, and dividing by 4 is exact
    assert torch.equal(pooled[0, 0, 0], maps[0, :2, :2].mean())
    assert torch.equal(pooled[1, 31, 5], maps[1, 62:, 10:12].mean())
    small = torch.rand(3, 7, 7)
    assert torch.equal(pool_maps(small), small)
    assert torch.isfinite(pool_maps(torch.full((1, 4, 4), float("nan")))).all()



def _documented_grid() -> int:
    """The pooling grid docs/metrics.md's "Map dependence" section documents ("at most G x G")."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    section = text.split("## Map dependence", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"average-pooled to at most (\d+) × (\d+)", " ".join(section.split()))
    assert len(found) == 1 and found[0][0] == found[0][1], found
    return int(found[0][0])


def test_default_grid_is_the_documented_one():
    """What every run pools to (the runner calls pool_maps with its default) and records in
    the manifest is the documented grid: a 224 px map becomes G x G means of its blocks, a map
    of G x G or smaller is kept as it is, one pixel more is pooled."""
    g = _documented_grid()
    assert dependence.describe()["options"]["grid"] == g
    maps = torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0))
    pooled = pool_maps(maps)
    assert pooled.shape == (2, g, g)
    b = 224 // g
    assert b * g == 224                                # whole blocks: the area mean of each
    blocks = maps.reshape(2, g, b, g, b).mean(dim=(2, 4))
    # two float32 means of the same b*b values in [0, 1): each within gamma_{b*b} * b*b
    # of the exact sum, divided by b*b (the same division in both)
    torch.testing.assert_close(pooled, blocks, rtol=0, atol=f32_tol(b * b, 1.0))
    at = torch.rand(1, g, g)
    assert torch.equal(pool_maps(at), at)
    assert pool_maps(torch.rand(1, g + 1, g + 1)).shape == (1, g, g)


def test_shape_errors():
    with pytest.raises(ValueError, match="maps"):
        map_dependence(torch.rand(3, 4), torch.tensor([0, 0, 0]))

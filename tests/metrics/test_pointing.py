"""Pointing game, class-averaged accuracy and the energy-based pointing game."""
import math
from fractions import Fraction

import pytest
import torch

from lico_bench.errors import UserError
from lico_bench.metrics.pointing import max_squared_distance
from lico_bench.metrics import (default_tolerance, energy_pointing_game, pointing_accuracy,
                                pointing_game, pointing_points)


def peak_map(h, w, points):
    m = torch.zeros(1, h, w)
    for y, x in points:
        m[0, y, x] = 1.0
    return m


def mask_at(h, w, pixels):
    s = torch.zeros(1, h, w, dtype=torch.bool)
    for y, x in pixels:
        s[0, y, x] = True
    return s


@pytest.mark.parametrize("pixel, dist", [((5, 8), 3.0), ((8, 9), 5.0), ((6, 6), math.sqrt(2))])
def test_tolerance_boundary_is_strict(pixel, dist):
    m, s = peak_map(16, 16, [(5, 5)]), mask_at(16, 16, [pixel])
    assert pointing_game(m, s, tolerance=dist).item() == 0.0           # exactly = tolerance: miss
    assert pointing_game(m, s, tolerance=dist + 1e-6).item() == 1.0    # slightly more: hit
    assert pointing_game(m, s, tolerance=dist - 1e-6).item() == 0.0
    # the next float up is already "more": the rule has no slack at all
    assert pointing_game(m, s, tolerance=math.nextafter(dist, math.inf)).item() == 1.0


def _offsets_by_squared_distance(limit):
    """Integer squared distances q = dy^2 + dx^2 <= limit, each with one (dy, dx) realising it."""
    out = {}
    for dy in range(math.isqrt(limit) + 1):
        for dx in range(dy, math.isqrt(limit - dy * dy) + 1):
            out.setdefault(dy * dy + dx * dx, (dy, dx))
    return out


@pytest.mark.parametrize("size", list(range(8, 225)) + [256, 299, 320, 384, 448, 512])
def test_boundary_exact_for_every_default_tolerance(size):
    """For the default tolerance of each image size (15 px at 224, scaled): the farthest
    mask pixel that still hits, and the nearest that misses, decided by exact rational
    arithmetic (q < t**2 with t the float's exact value) - the same answer on every CPU."""
    t = default_tolerance(size)
    t2 = Fraction(t) ** 2
    offsets = _offsets_by_squared_distance(2 * (size - 1) ** 2)
    inside = max(q for q in offsets if q < t2)                      # farthest hit
    outside = [q for q in offsets if q >= t2]                       # nearest miss, if any fits
    # the threshold over all integers q (not only sums of two squares): ceil(t^2) - 1
    assert max_squared_distance(t, 2 * (size - 1) ** 2) == min(math.ceil(t2) - 1, 2 * (size - 1) ** 2)
    cy = cx = 0                                                     # point in the corner
    m = peak_map(size, size, [(cy, cx)])
    dy, dx = offsets[inside]
    assert pointing_game(m, mask_at(size, size, [(cy + dy, cx + dx)])).item() == 1.0
    if outside:
        dy, dx = offsets[min(outside)]
        assert pointing_game(m, mask_at(size, size, [(cy + dy, cx + dx)])).item() == 0.0
    if t == int(t):                                                 # 224, 448: a pixel exactly at t
        assert pointing_game(m, mask_at(size, size, [(0, int(t))])).item() == 0.0
        assert pointing_game(m, mask_at(size, size, [(0, int(t) - 1)])).item() == 1.0


def test_max_squared_distance_by_hand():
    assert max_squared_distance(math.sqrt(2), 100) == 1              # sqrt(2) itself: a miss
    assert max_squared_distance(2.0, 100) == 3                       # 2 itself: a miss
    assert max_squared_distance(15 * 32 / 224, 2 * 31 ** 2) == 4     # 2.142..: sqrt(5) misses
    assert max_squared_distance(1e-9, 100) == 0                      # only the point itself
    assert max_squared_distance(1e300, 2 * 31 ** 2) == 2 * 31 ** 2   # everything, no overflow


def test_default_tolerance_scales_with_size():
    assert default_tolerance(224) == 15.0
    assert default_tolerance(32) == pytest.approx(15 * 32 / 224)       # 2.14 px
    m = peak_map(32, 32, [(10, 10)])
    assert pointing_game(m, mask_at(32, 32, [(12, 10)])).item() == 1.0  # 2 < 2.14
    assert pointing_game(m, mask_at(32, 32, [(12, 11)])).item() == 0.0  # sqrt(5) = 2.24


def test_ties_point_at_the_first_maximum():
    m = peak_map(16, 16, [(10, 10), (2, 3)])                           # equal peaks
    assert pointing_points(m)[0].tolist() == [2, 3]                    # first in flat order
    assert pointing_game(m, mask_at(16, 16, [(2, 3)]), tolerance=0).item() == 1.0
    assert pointing_game(m, mask_at(16, 16, [(10, 10)]), tolerance=0).item() == 0.0
    assert pointing_game(m, mask_at(16, 16, [(10, 10)]), tolerance=1).item() == 0.0


def test_tolerance_zero_means_inside_the_mask():
    m = peak_map(8, 8, [(4, 4)])
    assert pointing_game(m, mask_at(8, 8, [(4, 4)]), tolerance=0).item() == 1.0
    assert pointing_game(m, mask_at(8, 8, [(4, 5)]), tolerance=0).item() == 0.0
    # any positive tolerance also counts the point's own pixel (distance 0 < tol)
    assert pointing_game(m, mask_at(8, 8, [(4, 4)]), tolerance=1e-9).item() == 1.0


def test_empty_mask_is_nan_and_union_of_instances():
    m = torch.cat([peak_map(8, 8, [(1, 1)]), peak_map(8, 8, [(6, 6)]), peak_map(8, 8, [(0, 7)])])
    s = torch.zeros(3, 8, 8, dtype=torch.bool)
    s[0, 0:3, 0:3] = True                   # instance 1 of image 0
    s[1, 0:2, 0:2] = True                   # image 1: two instances, the point is in the second
    s[1, 5:8, 5:8] = True
    out = pointing_game(m, s, tolerance=0)  # image 2: empty mask
    assert out[:2].tolist() == [1.0, 1.0] and math.isnan(out[2].item())
    assert out.dtype == torch.float32 and out.shape == (3,)


def test_pointing_accuracy_by_hand():
    hits = torch.tensor([1, 0, 1, float("nan"), 1, 0, float("nan")])
    classes = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    # class 0: 1/2, class 1: 1/1 (NaN row skipped), class 2: 1/2, class 3: no rows -> left out
    assert pointing_accuracy(hits, classes) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert math.isnan(pointing_accuracy(torch.tensor([float("nan")]), torch.tensor([0])))
    with pytest.raises(UserError):
        pointing_accuracy(torch.tensor([1.0, 0.0]), torch.tensor([0]))


def test_energy_pointing_game_by_hand():
    maps = torch.tensor([[[1.0, -2.0], [3.0, 0.0]],     # relu: 1 0 3 0; inside 1+3 of 4 -> 1
                         [[2.0, 1.0], [1.0, 0.0]],      # inside 1 of 4 -> 0.25
                         [[0.0, 0.0], [0.0, 0.0]],      # all zero -> NaN
                         [[-1.0, -2.0], [-3.0, -4.0]],  # all negative -> NaN
                         [[1.0, 1.0], [1.0, 1.0]]])     # empty mask -> NaN
    masks = torch.tensor([[[1, 0], [1, 0]], [[0, 1], [0, 0]], [[1, 0], [0, 0]],
                          [[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.bool)
    out = energy_pointing_game(maps, masks)
    assert out[:2].tolist() == [1.0, 0.25]
    assert torch.isnan(out[2:]).all()


def test_shape_errors():
    with pytest.raises(UserError, match="input resolution"):
        pointing_game(torch.rand(2, 8, 8), torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(UserError, match="tolerance"):
        pointing_game(torch.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), tolerance=-1)

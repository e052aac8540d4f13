"""Float64 tolerances for the report's statistics (tests/tolerance.py with EPS64)."""
import numpy as np

from tests.tolerance import EPS64, f32_tol


def tol64(n_terms, magnitude, depth=1, computations=2):
    """f32_tol with float64's eps: two float64 computations of a value (computations=1:
    one against an exact value) that accumulate ``n_terms`` terms of total ``magnitude``."""
    return f32_tol(n_terms, magnitude, depth=depth, computations=computations, eps=EPS64)


def close64(a, b, n_terms, magnitude, depth=1, computations=2):
    """|a - b| <= tol64(...) elementwise (arrays, tuples or scalars); NaN matches NaN."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    bound = tol64(n_terms, magnitude, depth=depth, computations=computations)
    ok = (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= bound)
    return bool(np.all(ok))


def signed_ranks_stable(values, tol):
    """True when two computations of ``values``, each within ``tol``, give Wilcoxon's
    signed-rank test the same signs and the same rank sum of the positive values: no value
    within ``tol`` of 0, and values of opposite signs at least ``2 tol`` apart in |value|
    (two values of one sign may swap ranks without changing the sum)."""
    v = np.asarray(values, dtype=float)
    if (np.abs(v) <= tol).any():
        return False
    pos, neg = np.abs(v[v > 0]), np.abs(v[v < 0])
    return not (pos.size and neg.size) or bool(np.abs(pos[:, None] - neg[None, :]).min() > 2 * tol)

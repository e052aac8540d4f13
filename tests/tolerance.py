"""Float tolerances derived from the computation, never read off one machine.

Two float computations of the same quantity (batched vs one-image forwards, our kernel vs a
library, one thread vs several, AVX2 vs AVX-512) differ by rounding alone; how much depends
on how many terms each result accumulates and how large they are, not on the CPU. The bound
used here is the standard one for a sum of ``n`` terms in any order (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., eq. 3.4 / Lemma 3.1)::

    |fl(sum x_i) - sum x_i| <= gamma_n * sum |x_i|,   gamma_n = n u / (1 - n u),  u = eps / 2

Two computations can each be off by that much in opposite directions, so their difference is
bounded by ``2 gamma_n sum|x_i|``. A value computed through ``depth`` such accumulations in
sequence (layers of a network) picks up one such error per accumulation, each measured at the
magnitude it is propagated with (first order; the caller states the magnitude at the output's
scale). The bound is a worst case: a real defect of a relative size ~1e-3 (a pixel moved, a
logit off by 1e-3) is still orders of magnitude above it for the tiny computations the tests
make — each call site says which magnitudes it assumed.

Every tolerance in the tests is either one of these (with its ``n_terms``, ``magnitude`` and
``depth`` written next to the assertion) or an exact comparison.
"""
from __future__ import annotations

import torch

EPS32 = float(torch.finfo(torch.float32).eps)   # 2**-23
EPS64 = float(torch.finfo(torch.float64).eps)   # 2**-52


def gamma(n_terms: int, eps: float = EPS32) -> float:
    """Higham's gamma_n = n u / (1 - n u) with unit roundoff u = eps / 2."""
    u = eps / 2
    n = max(int(n_terms), 1)
    if n * u >= 1:
        raise ValueError(f"{n} terms: gamma_n is unbounded at eps={eps}")
    return n * u / (1 - n * u)


def f32_tol(n_terms: int, magnitude: float, *, depth: int = 1, computations: int = 2,
            eps: float = EPS32) -> float:
    """Bound on |a - b| for two float computations of the same value.

    n_terms: the longest accumulation (sum, dot product, convolution window, mean) on the
        path to the value; magnitude: the sum of the absolute values of the accumulated terms,
        at the scale of the value (a stated upper bound is fine); depth: accumulations in
        sequence (e.g. layers); computations: how many of the compared values carry rounding
        error (2 for two float computations, 1 against an exact or float64 reference).
    """
    return computations * depth * gamma(n_terms, eps) * float(magnitude)


def softmax_tol(logit_tol: float, n_classes: int, eps: float = EPS32) -> float:
    """Bound on |p - p'| for softmax probabilities of logits that differ by at most ``logit_tol``.

    p'_k / p_k lies in [exp(-2 d), exp(2 d)] when every logit moves by at most d, so
    |p'_k - p_k| <= (exp(2 d) - 1) p_k <= expm1(2 d); plus the softmax's own rounding (an exp,
    a sum of n_classes terms and a division per output, bounded by 2 gamma_{n_classes + 2}).
    """
    import math
    return math.expm1(2 * float(logit_tol)) + 2 * gamma(n_classes + 2, eps)

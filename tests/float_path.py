"""The float path the tests run on, and a perturbed one to exercise their tolerances.

A tolerance read off one machine passes there and fails on another CPU (AVX-512 vs AVX2),
another thread count or another batch split, which sum in another order. So that CI sees
this on every machine, ``LICO_BENCH_TEST_FLOAT_PATH=perturbed`` runs the tests on a second
float path (``.ci/run`` runs the numeric tests once more this way):

- intra-op threads: 2 instead of 1 (reductions and GEMMs split across threads);
- denormals flushed to zero (``torch.set_flush_denormal``; tiny gradients and probabilities);
- the library's own batch splits: every ``batch_size`` default of the metric kernels (the
  forwards of perturbed images in insertion/deletion, ROAD and part importance) becomes
  :data:`PERTURBED_BATCH`, an odd size none of the tests relies on, so the batched GEMMs are
  blocked differently. Explicit ``batch_size=`` arguments are left alone (tests that compare
  batch sizes keep their meaning), and so are the options that runs record (the metric
  classes' and explainers' defaults, which tests compare with the documented values).

A tolerance derived from the computation (tests/tolerance.py) holds on both paths; an exact
rule (ranks, ties, boundaries) gives the same answer on both.
"""
from __future__ import annotations

import importlib
import inspect
import os

import torch

ENV = "LICO_BENCH_TEST_FLOAT_PATH"
PERTURBED = os.environ.get(ENV, "") == "perturbed"
if os.environ.get(ENV, "") not in ("", "default", "perturbed"):
    raise RuntimeError(f"{ENV} must be 'default' or 'perturbed', got {os.environ[ENV]!r}")

#: intra-op threads of every test (tiny tensors: more threads mostly wait on a busy 2-core box)
THREADS = 2 if PERTURBED else 1
#: the batch split the library's batch_size defaults take on the perturbed path
PERTURBED_BATCH = 7

# (module, function) whose ``batch_size`` default is swapped
_BATCHED = [
    ("lico_bench.metrics.causal", "predict"),
    ("lico_bench.metrics.causal", "causal_curves"),
    ("lico_bench.metrics.causal", "insertion_curve"),
    ("lico_bench.metrics.causal", "deletion_curve"),
    ("lico_bench.metrics.road", "road_curves"),
    ("lico_bench.metrics.parts", "part_importance"),
]


def _swap_default(fn, name: str, value) -> None:
    """Set the default of parameter ``name`` of function ``fn`` to ``value`` (through a
    ``functools.wraps`` decorator, whose body calls the original)."""
    fn = inspect.unwrap(fn)
    params = list(inspect.signature(fn).parameters.values())
    p = next(p for p in params if p.name == name)
    if p.kind is inspect.Parameter.KEYWORD_ONLY:
        fn.__kwdefaults__[name] = value
        return
    with_defaults = [q for q in params if q.default is not inspect.Parameter.empty
                     and q.kind is not inspect.Parameter.KEYWORD_ONLY]
    d = list(fn.__defaults__)
    d[with_defaults.index(p)] = value
    fn.__defaults__ = tuple(d)


def apply() -> None:
    """Set this process's float path (called once, from tests/conftest.py)."""
    torch.set_num_threads(THREADS)
    if not PERTURBED:
        return
    torch.set_flush_denormal(True)
    for module, attr in _BATCHED:
        _swap_default(getattr(importlib.import_module(module), attr), "batch_size",
                      PERTURBED_BATCH)

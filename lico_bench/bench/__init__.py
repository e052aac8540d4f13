"""The benchmark runner: expands a grid into experiments and writes one row per image.

The runner (torch, models) is imported on first use, so that ``bench.spec`` and
``bench.manifest`` - which the report reads - stay importable without it."""
from .spec import DEFAULT_METRICS, Experiment, RunSpec, expand

__all__ = ["DEFAULT_METRICS", "Experiment", "RunSpec", "Runner", "expand", "map_status", "run"]


def __getattr__(name: str):
    if name in ("Runner", "map_status", "run"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

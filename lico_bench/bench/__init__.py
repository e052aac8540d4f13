"""The benchmark runner: expands a grid into experiments and writes one row per image."""
from .runner import Runner, map_status, run
from .spec import DEFAULT_METRICS, Experiment, RunSpec, expand

__all__ = ["DEFAULT_METRICS", "Experiment", "RunSpec", "Runner", "expand", "map_status", "run"]

"""The float path of tests/float_path.py is what it says, in whichever mode this run is."""
import inspect

import torch

from lico_bench.metrics.causal import DEFAULT_BATCH_SIZE, causal_curves
from tests import float_path


def test_threads_denormals_and_batch_split_follow_the_mode():
    assert torch.get_num_threads() == float_path.THREADS
    denormal = torch.tensor([1e-40], dtype=torch.float32)           # below float32's 1.18e-38
    flushed = bool((denormal * 1.0 == 0).item())
    assert flushed == float_path.PERTURBED
    want = float_path.PERTURBED_BATCH if float_path.PERTURBED else DEFAULT_BATCH_SIZE
    assert inspect.signature(causal_curves).parameters["batch_size"].default == want
    from lico_bench.metrics.road import road_curves
    assert inspect.signature(road_curves).parameters["batch_size"].default == want

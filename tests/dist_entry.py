"""``lico-bench`` with the tests' tiny models registered, for tests that launch it under
``torchrun`` (``python -m torch.distributed.run ... tests/dist_entry.py train ...``), with the
count of alpha resamples of tests/resamples.py (as the in-process runs they are compared with)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import tests.tiny  # noqa: E402,F401  (registers baseline_tiny / lico_tiny)
from lico_bench.cli import main  # noqa: E402
from tests.resamples import fewer_alpha_resamples  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    with fewer_alpha_resamples():
        code = main(sys.argv[1:])
    sys.exit(code)

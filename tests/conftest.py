"""Suite-wide settings: offline, and the float path of tests/float_path.py (one intra-op
thread by default: the tests' tensors are small, and on a shared 2-core machine two OpenMP
threads mostly wait for each other; LICO_BENCH_TEST_FLOAT_PATH=perturbed runs them on
another path to exercise the tolerances)."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# the dataset cache of large shapes images: not the user's
os.environ["LICO_BENCH_CACHE"] = tempfile.mkdtemp(prefix="lico-bench-test-cache-")

from tests import float_path  # noqa: E402

float_path.apply()

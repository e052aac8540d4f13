"""Suite-wide settings: offline, and one intra-op thread (the tests' tensors are small; on
a shared 2-core machine two OpenMP threads mostly wait for each other)."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# the dataset cache of large shapes images: not the user's
os.environ["LICO_BENCH_CACHE"] = tempfile.mkdtemp(prefix="lico-bench-test-cache-")

import torch  # noqa: E402

torch.set_num_threads(1)

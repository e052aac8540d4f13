"""Suite-wide settings: offline, and one intra-op thread (the tests' tensors are small; on
a shared 2-core machine two OpenMP threads mostly wait for each other)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tests.tiny  # noqa: E402,F401  (registers baseline_tiny and the peers' *_tiny)

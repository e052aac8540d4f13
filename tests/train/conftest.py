import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

import tests.tiny  # noqa: E402,F401  (registers baseline_tiny / lico_tiny)


@pytest.fixture
def tiny_cfg(tmp_path):
    from lico_bench.train import make_config

    def make(model="baseline_tiny", **kw):
        base = dict(model=model, n_train=128, epochs=2, batch_size=32, lr=0.05, n_ctx=2,
                    out=str(tmp_path / "runs"), device="cpu")
        base.update(kw)
        return make_config("quick", **base)
    return make

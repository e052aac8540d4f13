"""Fixtures of the reliability suite: tiny checkpoints and the command lines it runs."""
from pathlib import Path

import pytest
import torch

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench import create_dataset, create_model
from lico_bench.cli import main
from lico_bench.models import save_checkpoint
from tests.reliability.common import chdir, rows, run_argv, tables, train_argv
from tests.reliability.plugins import registered
from tests.resamples import fewer_alpha_resamples


@pytest.fixture(scope="package", autouse=True)
def _fewer_alpha_resamples():
    """This suite's runs draw tests/resamples.py's count of alpha resamples (see there);
    undone after the package, so the rest of the session runs with the library's count."""
    with fewer_alpha_resamples():
        yield


@pytest.fixture
def plugins():
    """The ``degenerate`` explainer and the ``nanshapes`` dataset, for this test only."""
    with registered():
        yield


@pytest.fixture(scope="package")
def ckpts(tmp_path_factory) -> dict:
    """Untrained but fixed (seeded) checkpoints: baseline_tiny / lico_tiny on shapes, and
    the wrong ones the bad-input tests hand over."""
    d = tmp_path_factory.mktemp("ckpts")
    info = create_dataset("shapes", "val", n=4).info
    with registered():
        nan_info = create_dataset("nanshapes", "test").info
    out = {}

    def save(key, name, k=10, info=info, **cfg):
        torch.manual_seed(len(out))
        m = create_model(name, k, dataset_info=info).eval()
        for f, v in cfg.items():
            setattr(m.cfg, f, v)
        out[key] = str(save_checkpoint(d / f"{key}.pt", m))

    save("baseline_tiny", "baseline_tiny")
    save("lico_tiny", "lico_tiny")
    save("baseline_r18", "baseline_r18")                   # another architecture
    save("five_classes", "baseline_tiny", k=5)             # another class count
    save("cifar10", "baseline_tiny", dataset="cifar10")    # another dataset
    save("size64", "baseline_tiny", image_size=64)         # another image size
    save("nanshapes", "baseline_tiny", info=nan_info)
    data = Path(out["baseline_tiny"]).read_bytes()
    trunc = d / "truncated.pt"
    trunc.write_bytes(data[: len(data) // 2])              # a download or copy cut short
    out["truncated"] = str(trunc)
    return out


@pytest.fixture(scope="package")
def reference_run(ckpts, tmp_path_factory) -> dict:
    """An uninterrupted in-process run of :func:`run_argv` (``--out res`` in its own cwd):
    its rows and tables, byte for byte, and the directory (copy it, never change it)."""
    d = tmp_path_factory.mktemp("reference-run")
    with chdir(d):
        assert main(run_argv(ckpts)) == 0
    return {"rows": rows(d / "res"), "tables": tables(d / "res"), "dir": d / "res"}


@pytest.fixture(scope="package")
def reference_training(tmp_path_factory) -> Path:
    """An uninterrupted in-process training of :func:`train_argv`: its model.pt."""
    d = tmp_path_factory.mktemp("reference-training")
    with chdir(d):
        assert main(train_argv()) == 0
    return d / "runs" / "shapes" / "baseline_tiny" / "seed0" / "model.pt"

"""The usage examples: every public class of explainers/ and metrics/ has one in its
docstring, and each runs as written (doctest), as does the "Python API" block of
docs/commands.md."""
import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

import lico_bench.explainers as explainers
import lico_bench.metrics as metrics

MODULES = ["lico_bench.explainers.base", "lico_bench.explainers.cam", "lico_bench.explainers.rise",
           "lico_bench.explainers.adapters", "lico_bench.explainers.gradients", "lico_bench.metrics.base", "lico_bench.metrics.builtin",
           "lico_bench.metrics.quantus_adapters"]


def _public_classes():
    out = [getattr(explainers, n) for n in explainers.__all__ if inspect.isclass(getattr(explainers, n))]
    out += [getattr(metrics, n) for n in metrics.__all__ if inspect.isclass(getattr(metrics, n))]
    from lico_bench.metrics import builtin, quantus_adapters

    for mod in (builtin, quantus_adapters):  # the registered metric classes
        out += [c for n, c in vars(mod).items()
                if inspect.isclass(c) and c.__module__ == mod.__name__ and not n.startswith("_")]
    return out


def test_every_public_class_has_an_example():
    classes = _public_classes()
    assert len(classes) >= 14
    missing = [c.__name__ for c in classes if ">>> " not in (c.__doc__ or "")]
    assert not missing, f"no usage example in the docstring of {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name.endswith("quantus_adapters"):
        pytest.importorskip("quantus")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_documented_python_api_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 12
    scope: dict = {}
    exec(compile(block, "docs/commands.md", "exec"), scope)
    assert scope["maps"].shape == (4, 64, 64)
    for name in ("insertion", "deletion"):
        values = scope[name].values
        assert values.shape == (4,) and bool(((values >= 0) & (values <= 1)).all())

"""The bench suite's runs draw tests/resamples.py's count of alpha resamples (no test here
reads the method report; tests/dist_entry.py does the same in torchrun's children)."""
import pytest

from tests.resamples import fewer_alpha_resamples


@pytest.fixture(scope="package", autouse=True)
def _fewer_alpha_resamples():
    """Undone after the package: the rest of the session runs with the library's count."""
    with fewer_alpha_resamples():
        yield

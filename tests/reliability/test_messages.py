"""One-line stderr: warnings that libraries raise while a command runs (torch's span
several lines, with the C++ source they were "Triggered internally at") are captured; a
command that succeeds prints one stderr line counting them, one that fails prints only its
error line, and ``--verbose`` (before or after the command) prints them in full."""
import warnings

import pytest

import lico_bench.data
from lico_bench.cli import main
from lico_bench.errors import UserError
from tests.reliability.common import ERROR

NOISY = "a library's warning\n  over two lines (Triggered internally at x.cpp:356.)"


@pytest.fixture
def noisy(monkeypatch):
    """``info`` and ``dataset show`` raise two library warnings (one repeated) on the way."""
    real_list, real_create = lico_bench.data.list_datasets, lico_bench.data.create_dataset

    def warn():
        for _ in range(3):   # the same warning from one place: counted once
            warnings.warn(NOISY, UserWarning)
        warnings.warn("another one", RuntimeWarning)   # numpy's kind

    def list_datasets():
        warn()
        return real_list()

    def create_dataset(*a, **kw):
        warn()
        return real_create(*a, **kw)

    monkeypatch.setattr(lico_bench.data, "list_datasets", list_datasets)
    monkeypatch.setattr(lico_bench.data, "create_dataset", create_dataset)


def test_a_success_says_how_many_in_one_line(capsys, noisy):
    assert main(["info"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["lico-bench: note: 2 library warning(s) not shown (first: UserWarning: a "
                   "library's warning over two lines (Triggered internally at x.cpp:356.)); "
                   "add --verbose to see them."]


def test_a_failure_prints_only_its_error(capsys, noisy, tmp_path):
    rc = main(["dataset", "show", "shapes", "--split", "nosuch", "--out", str(tmp_path / "g.png")])
    err = capsys.readouterr().err.splitlines()
    assert rc == UserError.exit_code and len(err) == 1 and err[0].startswith(ERROR), err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("argv", [["--verbose", "info"], ["info", "--verbose"]],
                         ids=["before", "after"])
def test_verbose_shows_them_in_full(capsys, noisy, argv):
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "UserWarning: a library's warning\n  over two lines" in err
    assert "RuntimeWarning: another one" in err
    assert "lico-bench: note" not in err


def test_no_warning_no_line(capsys):
    assert main(["info"]) == 0
    assert capsys.readouterr().err == ""

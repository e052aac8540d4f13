"""The CLI skeleton: info, dataset show, one-line errors with exit status 2."""
import subprocess
import sys

from lico_bench.cli import main


def test_info_lists_everything(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "lico-bench" in out and "torch" in out and "shapes" in out and "lico_r18" in out


def test_unknown_names_and_bad_arguments_exit_2_with_one_line(capsys, tmp_path):
    for argv in (["dataset", "show", "nope", "--out", str(tmp_path / "x.png")],
                 ["dataset", "show", "shapes"],
                 ["dataset", "show", "shapes", "--out", str(tmp_path / "x.png"), "-n", "0"],
                 ["frobnicate"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("lico-bench: error: ") and err.count("\n") == 1, err


def test_dataset_show_writes_png(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["dataset", "show", "shapes", "--out", str(out), "-n", "6"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_console_script_runs_as_a_process():
    r = subprocess.run([sys.executable, "-m", "lico_bench.cli", "dataset", "show", "bogus", "--out", "x.png"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown dataset 'bogus'" in r.stderr

"""Atomic writes keep the permissions a plain ``open()`` would give."""
import stat

from lico_bench.io import torch_save, write_text


def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    want = stat.S_IMODE(plain.stat().st_mode)
    for p in (write_text(tmp_path / "a.txt", "x"), torch_save({"a": 1}, tmp_path / "b.pt")):
        assert stat.S_IMODE(p.stat().st_mode) == want, p

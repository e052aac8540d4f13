"""Rows are verified, not trusted. Each finished experiment's rows file has a check beside
it (``rows/<experiment>.check.json``: row count and sha256, written atomically just before
the rows); ``report`` and ``run`` check it and the image ids (each of 0..n-1 exactly once).

A rows file cut at a line boundary (it used to be accepted: the tables said "30 images"
and counted 20), a duplicated line (counted twice), a line cut mid-way or garbled into bad
JSON (a JSONDecodeError traceback), or a value edited in place:

* ``report`` (and ``figures``) end in one line naming the file and what is wrong, exit 2,
  no file written;
* ``run`` says so in one line, keeps the file aside as ``<file>.damaged``, recomputes just
  that experiment (the other rows files are not touched) and ends with the rows and tables
  of an uninterrupted run.

Results written before checks existed are still read (ids and counts checked, reported as
unverified), and damage to them is caught by the same id and count checks."""
import hashlib
import json
import shutil

import pytest

from tests.reliability.common import chdir, cli_error, cli_ok, rows, run_argv, tables

DAMAGED = "shapes__baseline_tiny__gradcam__seed0.jsonl"


def _cut_at_line(data: bytes) -> bytes:
    return b"".join(data.splitlines(keepends=True)[:20])           # 30 -> 20 lines


def _duplicate_line(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:6] + [lines[5]] + lines[6:])               # image 5 twice


def _cut_mid_line(data: bytes) -> bytes:
    return data[: len(data) - 40]


def _garble_line(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[11] = lines[11][:30] + b"#" + lines[11][31:]
    return b"".join(lines)


def _edit_value(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    r = json.loads(lines[3])
    r["insertion"] = 0.999                                            # valid JSON, ids fine
    lines[3] = (json.dumps(r, sort_keys=True) + "\n").encode()
    return b"".join(lines)


CASES = [
    (_cut_at_line, "it holds 20 rows for the run's 30 images"),
    (_duplicate_line, "image 5 appears 2 times"),
    (_cut_mid_line, "its last line is cut short"),
    (_garble_line, "line 12 is not valid JSON"),
    (_edit_value, "a row was changed (its bytes no longer match the checksum in "
                  "shapes__baseline_tiny__gradcam__seed0.check.json)"),
]
IDS = ["cut-at-line", "duplicated-line", "cut-mid-line", "garbled-line", "edited-value"]


@pytest.fixture
def work(tmp_path, reference_run):
    """A copy of the finished reference run, as ``work/res``."""
    shutil.copytree(reference_run["dir"], tmp_path / "res")
    return tmp_path


def _damage(res, how, old_format=False):
    if old_format:  # as written by a lico-bench without checks
        for c in (res / "rows").glob("*.check.json"):
            c.unlink()
    f = res / "rows" / DAMAGED
    f.write_bytes(how(f.read_bytes()))
    return f


def _report_refuses(capsys, work, f, why):
    cli_error(capsys, ["report", str(work / "res")], f"rows file {f} is damaged: {why}",
              "it recomputes just that experiment", watch=[work])
    cli_error(capsys, ["figures", str(work / "res"), "--format", "png"],
              f"rows file {f} is damaged", watch=[work])


def _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why):
    others = {p: p.stat().st_mtime_ns for p in (work / "res" / "rows").glob("*.jsonl") if p != f}
    with chdir(work):
        out = cli_ok(capsys, run_argv(ckpts))
    said = [l for l in out.splitlines() if "damaged" in l]
    assert len(said) == 1, out
    assert said[0].startswith(f"rows file {f.relative_to(work)} is damaged: {why}")
    assert said[0].endswith(f"; it is kept as {DAMAGED}.damaged and this experiment is computed again.")
    assert "3 of 4 experiments already complete" in out
    assert {p: p.stat().st_mtime_ns for p in others} == others      # the rest kept as they were
    assert (f.parent / f"{DAMAGED}.damaged").exists()
    assert rows(work / "res") == reference_run["rows"]
    assert tables(work / "res") == reference_run["tables"]


@pytest.mark.parametrize("how,why", CASES, ids=IDS)
def test_damaged_rows_are_caught_and_recomputed(capsys, work, ckpts, reference_run, how, why):
    f = _damage(work / "res", how)
    _report_refuses(capsys, work, f, why)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why)
    assert (f.parent / f"{DAMAGED[:-6]}.check.json").exists()



def _last_id_out_of_range(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    r = json.loads(lines[-1])
    r["image_id"] = len(lines)                                        # ids 0..28, 30
    lines[-1] = (json.dumps(r, sort_keys=True) + "\n").encode()
    return b"".join(lines)


@pytest.mark.parametrize("how,why", [
    (_cut_at_line, "it holds 20 rows for the run's 30 images"),
    (_last_id_out_of_range, "image 30 is not one of the run's images 0..29"),
], ids=["fewer-rows-than-n_images", "one-id-out-of-range"])
def test_rows_with_a_matching_check_are_still_checked_against_the_run(capsys, work, ckpts,
                                                                      reference_run, how, why):
    """A check file vouches only that the bytes are unchanged since it was written, not that
    they are this run's rows: a rows file whose check was rewritten to match (its row count
    20, not the run's n_images = 30; or the right count with ids 0..28 and 30) is damaged for
    ``report`` and for ``run`` alike, and ``run`` recomputes it."""
    f = _damage(work / "res", how)
    data = f.read_bytes()
    check = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
    check.write_text(json.dumps({"format": 1, "rows": data.count(b"\n"),
                                 "sha256": hashlib.sha256(data).hexdigest()}))
    _report_refuses(capsys, work, f, why)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why)


@pytest.mark.parametrize("how,why", CASES[:4], ids=IDS[:4])
def test_damaged_rows_without_checks_are_caught_by_ids_and_counts(capsys, work, ckpts,
                                                                  reference_run, how, why):
    """Results of an older lico-bench (no check files): cut, duplicated and garbled rows
    are still caught (an edited value cannot be, without a checksum)."""
    f = _damage(work / "res", how, old_format=True)
    _report_refuses(capsys, work, f, why)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why)


def test_results_without_checks_are_still_read_as_unverified(capsys, work):
    """``report`` on results written before checks existed (as results/ in the repository):
    the same tables, and a note that they are unverified."""
    _damage(work / "res", lambda d: d, old_format=True)
    out = cli_ok(capsys, ["report", str(work / "res")])
    assert "note: 4 of 4 rows files have no checksum (written by an older lico-bench)" in out
    assert not list((work / "res" / "rows").glob("*.check.json"))


def test_a_check_without_its_rows_file_means_unfinished(capsys, work, ckpts, reference_run):
    """A run killed between writing an experiment's check and its rows file: the
    experiment is simply not finished; the rerun computes it and ends as an uninterrupted
    run."""
    f = work / "res" / "rows" / DAMAGED
    f.unlink()
    with chdir(work):
        out = cli_ok(capsys, run_argv(ckpts))
    assert "3 of 4 experiments already complete" in out and "damaged" not in out
    assert rows(work / "res") == reference_run["rows"]


def test_a_damaged_part_file_is_computed_again(capsys, work, ckpts, reference_run):
    """A part file of an unfinished experiment that is not whole (a batch of rows with a
    line missing) is computed again, not merged."""
    res = work / "res"
    f = res / "rows" / DAMAGED
    key = DAMAGED[: -len(".jsonl")]
    parts = res / "parts" / key
    parts.mkdir(parents=True)
    lines = f.read_text().splitlines(keepends=True)
    for start in range(0, 30, 5):
        (parts / f"{start:06d}.jsonl").write_text("".join(lines[start:start + 5]))
    (parts / "000010.jsonl").write_text("".join(lines[10:14]))      # image 14 lost
    f.unlink()
    (res / "rows" / f"{key}.check.json").unlink()
    with chdir(work):
        cli_ok(capsys, run_argv(ckpts))
    assert rows(res) == reference_run["rows"]


@pytest.mark.parametrize("text", ["[]", '{"spec": 3}', '{"format": 1, "spec": {"n_images": 3'],
                         ids=["a-list", "spec-not-an-object", "cut-short"])
def test_a_damaged_manifest_is_one_line(capsys, work, ckpts, text):
    """A manifest.json that is valid JSON of the wrong shape (or cut short): ``report`` and
    ``run`` refuse it in one line instead of an AttributeError/TypeError traceback."""
    (work / "res" / "manifest.json").write_text(text)
    cli_error(capsys, ["report", str(work / "res")], "manifest.json", "damaged", watch=[work])
    with chdir(work):
        cli_error(capsys, run_argv(ckpts), "manifest.json", "damaged", watch=[work])

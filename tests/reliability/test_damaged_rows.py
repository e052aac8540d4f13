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

Results written before checks existed (no check files, no ``row_checks`` in the manifest)
are still read (ids and counts checked, reported as unverified), and damage to them is
caught by the same id and count checks. Where the manifest says every rows file has its
check, a missing check file is damage: deleting it cannot switch verification off
(before, forged rows with their check deleted were reported as "written by an older
lico-bench" and ``run`` called them complete)."""
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


def _slow_but(cases, ids, keep):
    """``cases`` as pytest params with ``ids``, all marked slow but the one named ``keep``.

    ``run`` finds damage with the check ``report`` uses (lico_bench.results.read_rows), and
    what follows (set aside, recompute, tables) does not depend on the kind of damage; so
    the default run has every kind refused by ``report`` (the ``*_refused_by_report`` tests)
    and one kind per test recomputed by ``run`` (a run of its own: ~10 s each)."""
    return [pytest.param(*c, id=i, marks=() if i == keep else pytest.mark.slow)
            for c, i in zip(cases, ids)]


@pytest.fixture
def work(tmp_path, reference_run):
    """A copy of the finished reference run, as ``work/res``."""
    shutil.copytree(reference_run["dir"], tmp_path / "res")
    return tmp_path


def _damage(res, how, old_format=False):
    if old_format:  # as written by a lico-bench without checks (no "row_checks" either)
        for c in (res / "rows").glob("*.check.json"):
            c.unlink()
        man = json.loads((res / "manifest.json").read_text())
        del man["row_checks"], man["cpu"]   # keys added after checks (results/shapes_variants)
        (res / "manifest.json").write_text(json.dumps(man))
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
def test_damaged_rows_are_refused_by_report(capsys, work, how, why):
    _report_refuses(capsys, work, _damage(work / "res", how), why)


@pytest.mark.parametrize("how,why", _slow_but(CASES, IDS, keep="edited-value"))
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


MATCHING = [(_cut_at_line, "it holds 20 rows for the run's 30 images"),
            (_last_id_out_of_range, "image 30 is not one of the run's images 0..29")]
MATCHING_IDS = ["fewer-rows-than-n_images", "one-id-out-of-range"]


def _damage_with_matching_check(res, how):
    f = _damage(res, how)
    data = f.read_bytes()
    check = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
    check.write_text(json.dumps({"format": 1, "rows": data.count(b"\n"),
                                 "sha256": hashlib.sha256(data).hexdigest()}))
    return f


@pytest.mark.parametrize("how,why", MATCHING, ids=MATCHING_IDS)
def test_rows_with_a_matching_check_are_refused_by_report(capsys, work, how, why):
    _report_refuses(capsys, work, _damage_with_matching_check(work / "res", how), why)


@pytest.mark.parametrize("how,why", _slow_but(MATCHING, MATCHING_IDS, keep="one-id-out-of-range"))
def test_rows_with_a_matching_check_are_still_checked_against_the_run(capsys, work, ckpts,
                                                                      reference_run, how, why):
    """A check file vouches only that the bytes are unchanged since it was written, not that
    they are this run's rows: a rows file whose check was rewritten to match (its row count
    20, not the run's n_images = 30; or the right count with ids 0..28 and 30) is damaged for
    ``report`` and for ``run`` alike, and ``run`` recomputes it."""
    f = _damage_with_matching_check(work / "res", how)
    _report_refuses(capsys, work, f, why)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why)


@pytest.mark.parametrize("how,why", CASES[:4], ids=IDS[:4])
def test_damaged_rows_without_checks_are_refused_by_report(capsys, work, how, why):
    _report_refuses(capsys, work, _damage(work / "res", how, old_format=True), why)


@pytest.mark.parametrize("how,why", _slow_but(CASES[:4], IDS[:4], keep="garbled-line"))
def test_damaged_rows_without_checks_are_caught_by_ids_and_counts(capsys, work, ckpts,
                                                                  reference_run, how, why):
    """Results of an older lico-bench (no check files): cut, duplicated and garbled rows
    are still caught (an edited value cannot be, without a checksum)."""
    f = _damage(work / "res", how, old_format=True)
    _report_refuses(capsys, work, f, why)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, why)


MISSING_CHECK = ("its check file shapes__baseline_tiny__gradcam__seed0.check.json is missing "
                 "(this lico-bench writes one with every rows file)")


def test_a_missing_check_file_is_damage(capsys, work, ckpts, reference_run):
    """The issue's forgery: delete ``rows/<exp>.check.json`` and set every insertion to
    0.999. Before: ``report`` exited 0 with Insertion 99.9 (true 34.3) and a note about an
    older lico-bench, ``run`` said "4 of 4 experiments already complete". The manifest is of
    this version's, it says every rows file has its check ("row_checks"), so none can be
    missing legitimately: ``report`` refuses in one line (tables untouched) and ``run``
    recomputes that experiment alone."""
    f = work / "res" / "rows" / DAMAGED
    (f.parent / f"{DAMAGED[:-6]}.check.json").unlink()
    lines = [json.loads(l) for l in f.read_text().splitlines()]
    f.write_text("".join(json.dumps({**r, "insertion": 0.999}, sort_keys=True) + "\n"
                         for r in lines))
    _report_refuses(capsys, work, f, MISSING_CHECK)
    _run_recomputes_just_that_experiment(capsys, work, ckpts, reference_run, f, MISSING_CHECK)


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
    key = DAMAGED[: -len(".jsonl")]
    # report: an experiment missing is one line, never tables without it (before: exit 0,
    # the experiment silently dropped, the good summary files replaced)
    cli_error(capsys, ["report", str(work / "res")], f"experiment {key} has a check file but "
              f"no rows file ({f} is missing; 1 experiment(s) in all), so the tables were "
              "left as they are", watch=[work])
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


def test_an_experiment_of_the_manifest_without_rows(capsys, work):
    """A finished experiment's rows file and check both deleted: ``report`` used to build
    tables without it and replace the good ones; now one line naming it."""
    key = DAMAGED[: -len(".jsonl")]
    (work / "res" / "rows" / DAMAGED).unlink()
    (work / "res" / "rows" / f"{key}.check.json").unlink()
    cli_error(capsys, ["report", str(work / "res")], f"experiment {key} is in the manifest but "
              "has no rows file", "so the tables were left as they are", watch=[work])


@pytest.mark.parametrize("drop", ["metrics", "spec", "format", "everything"])
def test_a_manifest_that_cannot_say_what_was_run(capsys, work, drop):
    """A manifest without ``metrics`` (or ``spec``, ``format``), or ``{}``: before, report
    exited 0 with an empty saliency table ("# Results: ? (test split, ? images, seeds ?)")
    over the good summary files."""
    path = work / "res" / "manifest.json"
    man = json.loads(path.read_text())
    path.write_text(json.dumps({} if drop == "everything" else
                               {k: v for k, v in man.items() if k != drop}))
    what = "format" if drop == "everything" else drop
    cli_error(capsys, ["report", str(work / "res")], f"{path} cannot say what was run (no "
              f"'{what}'", "its tables were left as they are", watch=[work])


def test_older_results_with_some_checks_need_all(capsys, work):
    """A manifest written before "row_checks" existed, in a directory holding check files:
    a lico-bench that writes checks writes one per experiment, so one missing is damage."""
    man = json.loads((work / "res" / "manifest.json").read_text())
    del man["row_checks"]
    (work / "res" / "manifest.json").write_text(json.dumps(man))
    f = work / "res" / "rows" / DAMAGED
    (f.parent / f"{DAMAGED[:-6]}.check.json").unlink()
    cli_error(capsys, ["report", str(work / "res")], f"rows file {f} is damaged: "
              + MISSING_CHECK, watch=[work])


def test_older_results_with_every_check_deleted(capsys, work):
    """A manifest written before "row_checks" existed but after check files did (it records
    the host ``cpu``, as results/shapes_default does), with every check file deleted and a
    value forged: before, the rows were read as "unverified" and the forged value was in
    the tables; now each missing check is damage."""
    man = json.loads((work / "res" / "manifest.json").read_text())
    del man["row_checks"]
    assert "cpu" in man
    (work / "res" / "manifest.json").write_text(json.dumps(man))
    for c in (work / "res" / "rows").glob("*.check.json"):
        c.unlink()
    f = work / "res" / "rows" / DAMAGED
    f.write_bytes(_edit_value(f.read_bytes()))
    cli_error(capsys, ["report", str(work / "res")], "is damaged: " + MISSING_CHECK,
              watch=[work])

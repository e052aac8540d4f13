"""bench/manifest.py: the one place that builds, writes, reads and compares manifests;
explainers and metrics describe their own options."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lico_bench.bench import manifest as man
from lico_bench.errors import UserError
from tests.bench.manifest_golden import VOLATILE, stable, tiny_run

GOLDEN = Path(__file__).parent / "data" / "tiny_manifest.json"


def test_manifest_of_a_tiny_run_is_unchanged(tmp_path):
    """Built by bench/manifest.py from the explainers' and metrics' own descriptions, the
    manifest of a tiny run (an automatic and a given option, RISE's seed, map dependence)
    has exactly the keys and values the runner wrote before (golden file made by that code),
    environment entries (versions, git commit, paths, threads) apart."""
    got = tiny_run(tmp_path)
    assert set(got) == set(json.loads(GOLDEN.read_text())) | set(VOLATILE)
    assert json.dumps(stable(got), indent=2, sort_keys=True) + "\n" == GOLDEN.read_text()
    assert got["git_commit"] is None or len(got["git_commit"]) >= 40
    # the manifest is read back by the one reader, for every purpose
    for purpose in ("report", "resume"):
        assert man.read_manifest(tmp_path / "res", purpose) == got
    assert man.read_manifest(tmp_path / "res" / "manifest.json", "rerun") == got
    assert man.differences(got, got) == []


def test_differences_name_what_makes_rows_incomparable():
    base = {"spec": {"n_images": 10, "models": ["a"], "device": "cpu", "out": "x"},
            "precision": "fp32", "methods": {"rise": {"options": {"N": 4}}}, "metrics": {}}
    same = json.loads(json.dumps(base))
    same["spec"].update(device="cuda", out="y")          # where and on what: not identity
    assert man.differences(base, same) == []
    other = json.loads(json.dumps(base))
    other["spec"]["n_images"] = 3
    other["methods"]["rise"]["options"]["N"] = 8
    other["precision"] = "bf16"
    assert man.differences(base, other) == ["n_images", "precision", "method/metric options"]
    # seeds appended: the same run grown; fewer, reordered or replaced seeds: another run
    seeds = lambda v: {**base, "spec": {**base["spec"], "seeds": v}}  # noqa: E731
    assert man.differences(seeds([0, 1]), seeds([0, 1, 2])) == []
    for later in ([0], [1, 0, 2], [0, 2], [0, 1]):
        assert man.differences(seeds([0, 1]), seeds(later)) == ([] if later == [0, 1] else ["seeds"])
    # a manifest written before precision was recorded ran in fp32
    assert man.differences({k: v for k, v in base.items() if k != "precision"}, base) == []


def test_check_resumable_reads_with_the_resume_wording(tmp_path):
    new = {"spec": {"n_images": 1}, "precision": "fp32", "methods": {}, "metrics": {}}
    man.check_resumable(tmp_path, new)                    # no manifest yet: nothing to compare
    man.write_manifest(tmp_path, {**new, "format": man.MANIFEST_FORMAT})
    man.check_resumable(tmp_path, new)
    with pytest.raises(UserError, match=r"holds a run with other settings \(n_images\)"):
        man.check_resumable(tmp_path, {**new, "spec": {"n_images": 2}})
    (tmp_path / "manifest.json").write_text("{cut")
    with pytest.raises(UserError, match="is unreadable; this results directory is damaged"):
        man.check_resumable(tmp_path, new)


@pytest.mark.parametrize("text,purpose,needle", [
    ("[]", "report", "is not a lico-bench manifest (not the JSON object"),
    ("{bad", "report", "is not valid JSON; the results directory is damaged"),
    ('{"format": 1, "spec": {}}', "resume", "was written by an incompatible lico-bench (manifest format 1"),
    ('{"format": 1, "spec": {"models": ["m"]}, "metrics": {"insertion": {}}}', "report",
     None),                                             # the report reads older formats
    ('{"format": 1, "spec": {}, "metrics": {"insertion": {}}}', "report",
     "cannot say what was run (no 'spec'"),
    ("{}", "report", "cannot say what was run (no 'format'"),
    ('{"format": 1, "spec": {}}', "rerun", "has format 1; this lico-bench reads format 2"),
    ("[1]", "rerun", "has format None"),
    ('{"format": 2}', "rerun", "has no 'spec' (the run's options), so it cannot be re-run"),
])
def test_read_manifest_problems_are_one_line(tmp_path, text, purpose, needle):
    (tmp_path / "manifest.json").write_text(text)
    if needle is None:
        assert man.read_manifest(tmp_path, purpose)["format"] == 1
        return
    with pytest.raises(UserError) as e:
        man.read_manifest(tmp_path, purpose)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(UserError, match="is not a results directory"):
        man.read_manifest(tmp_path / "nope", "report")
    with pytest.raises(UserError, match="does not exist"):
        man.read_manifest(tmp_path / "nope.json", "rerun")


def test_explainers_and_metrics_describe_themselves():
    from lico_bench.explainers import create_explainer, create_explainer_for_seed
    from lico_bench.metrics import create_metric

    rise = create_explainer("rise", N=40)
    assert rise.describe() == {"class": "RISE", "options": {"N": 40, "s": None, "p": 0.5,
                                                            "seed": 0, "batch_size": 64}}
    assert create_explainer_for_seed("rise", {"N": 40}, 3).options["seed"] == 3
    assert create_explainer_for_seed("rise", {"seed": 7}, 3).options["seed"] == 7  # given wins
    assert create_explainer_for_seed("gradcam", {}, 3).options == {"layer": None}  # no randomness
    ins = create_metric("insertion")
    from lico_bench.metrics.causal import default_step

    assert ins.describe((32, 32))["resolved_step"] == default_step(32, 32)
    assert "resolved_step" not in create_metric("insertion", step=64).describe((32, 32))
    assert create_metric("pointing_game").describe((32, 32)) == {
        "higher_is_better": True, "options": create_metric("pointing_game").options}


def test_the_runner_knows_no_method_or_metric_defaults():
    """RISE's seeding and insertion's automatic step are the explainer's and metric's own
    knowledge (describe, seed_option), not the runner's."""
    import lico_bench.bench.runner as runner

    src = Path(runner.__file__).read_text()
    assert '"rise"' not in src and "default_step" not in src and "resolved_step" not in src


def test_the_report_reads_manifests_without_the_runner():
    """bench.manifest (the reader the report uses) imports neither the runner nor a model."""
    code = ("import sys, lico_bench.report, lico_bench.bench.manifest; "
            "print('lico_bench.bench.runner' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"

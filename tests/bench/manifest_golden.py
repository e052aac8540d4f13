"""The tiny run whose manifest tests/bench/data/tiny_manifest.json records (written by the
code before bench/manifest.py existed; regenerate with
``python -m tests.bench.manifest_golden OUT.json`` only when the manifest is meant to change).

Environment-dependent entries (versions, git commit, command, checkpoint and results paths,
thread count) are left out; everything else must stay byte-identical. Changed on purpose:
"trained" added (what each checkpoint was trained with; these were saved by hand, so their
recipe is null)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

VOLATILE = ("versions", "git_commit", "command", "checkpoints", "threads", "cpu")


def tiny_run(tmp: Path) -> dict:
    """Run baseline_tiny + lico_tiny x gradcam, scorecam, rise (one option given, one
    automatic) on 6 shapes images, with an insertion option; return the manifest."""
    import torch

    import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
    from lico_bench import create_dataset, create_model
    from lico_bench.bench import RunSpec, run
    from lico_bench.models import save_checkpoint

    info = create_dataset("shapes", "val", n=4).info
    ckpts = {}
    for i, name in enumerate(("baseline_tiny", "lico_tiny")):
        torch.manual_seed(i)
        ckpts[name] = str(save_checkpoint(tmp / f"{name}.pt", create_model(name, 10, dataset_info=info).eval()))
    spec = RunSpec(models=["baseline_tiny", "lico_tiny"], methods=["gradcam", "scorecam", "rise"],
                   n_images=6, batch_size=3, checkpoints=ckpts, train=False, device="cpu",
                   out=str(tmp / "res"), method_options={"scorecam": {"batch_size": 16}},
                   metric_options={"deletion": {"step": 64}})
    out = run(spec, log=lambda *a, **k: None, progress=False, report=False)
    return json.loads((Path(out) / "manifest.json").read_text())


def stable(manifest: dict) -> dict:
    """``manifest`` without its environment-dependent entries (and the results path)."""
    out = {k: v for k, v in manifest.items() if k not in VOLATILE}
    out["spec"] = {**out["spec"], "out": None, "checkpoints": sorted(out["spec"]["checkpoints"])}
    if "trained" in out:   # each checkpoint's path is the test's temporary folder
        out["trained"] = {k: {**e, "checkpoint": None} for k, e in out["trained"].items()}
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        man = stable(tiny_run(Path(d)))
    Path(sys.argv[1]).write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")

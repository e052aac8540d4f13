"""The run manifest, ``<results>/manifest.json``: build, write, read, compare.

The one module that knows the manifest's layout. The runner builds and writes it and
compares it with the one already in a results directory (resuming); ``run --config`` and
``run --from-manifest`` read its ``spec`` back; the report reads it for the tables and
figures. Reading is pure Python and json (no torch, no model), so tables rebuild anywhere.

Layout (format 2)::

    format            MANIFEST_FORMAT
    spec              the RunSpec, every field (a valid ``run --config`` file by itself)
    methods           {method: {"class", "options"}}: each explainer's options as given
    methods_resolved  {model: {method: options}}: automatic options resolved per architecture
    rise_seed         how RISE's mask seed is chosen
    metrics           {metric: {"higher_is_better", "options", ["resolved_step"]}}
    models            {model: family, arch, variant (+ variant_settings)}
    dataset           the DatasetInfo
    checkpoints       {"model@seedN": path}
    versions, device, world_size, threads, precision, git_commit, command
"""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import UserError

# 2: "models" (family, arch, LICO variant of each model; lico_<arch> became the paper's
# per-token reading, format 1's was today's lico_rolled_<arch>), map_dependence in the rows.
MANIFEST_FORMAT = 2
NAME = "manifest.json"

# What is wrong with a manifest, in the words of whoever reads it: re-running a recorded
# run (``--from-manifest``/``--config``), resuming into its results directory, or reporting.
_FIX = {"rerun": "pass the manifest.json written by 'lico-bench run'",
        "resume": "this results directory is damaged, use another --out",
        "report": "the results directory is damaged"}


def manifest_path(path: Path) -> Path:
    """A results directory -> its manifest.json; a file path is returned as is."""
    path = Path(path)
    return path / NAME if path.is_dir() else path


def read_manifest(path: Path, purpose: str = "report") -> Dict[str, Any]:
    """The manifest of results directory ``path`` (for "rerun" also a manifest.json), checked: a JSON
    object whose ``spec`` and ``metrics`` are objects; for ``purpose`` "rerun" and "resume"
    also of this :data:`MANIFEST_FORMAT` (the report reads older formats too). Any problem is
    a one-line :class:`UserError` worded for ``purpose`` ("rerun": ``run --from-manifest`` or
    ``run --config``; "resume": the manifest of the results directory a run writes into;
    "report": ``report``/``figures``)."""
    given = Path(path)
    # the run and the report name a results directory; a re-run takes either
    path = manifest_path(given) if purpose == "rerun" else given / NAME
    fix = _FIX[purpose]
    if not path.is_file():
        if purpose == "report":
            raise UserError(f"{given} is not a results directory (no manifest.json); pass the "
                            "directory that 'lico-bench run' printed.")
        raise UserError(f"manifest {str(path)!r} does not exist; pass the manifest.json of a "
                        "results directory written by 'lico-bench run'.")
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        if purpose == "report" and isinstance(e, OSError):
            raise  # no permission and the like: the CLI names the path and the fix
        if purpose == "resume":
            raise UserError(f"{path} is unreadable; {fix}.") from None
        if purpose == "report":
            raise UserError(f"{path} is not valid JSON; {fix}.") from None
        raise UserError(f"manifest {str(path)!r} is not readable JSON ({type(e).__name__}); "
                        f"{fix}.") from None
    if not (isinstance(man, dict) and isinstance(man.get("spec", {}), dict)
            and isinstance(man.get("metrics", {}), dict)):
        if purpose == "report":
            raise UserError(f"{path} is not a lico-bench manifest (not the JSON object 'lico-bench "
                            f"run' writes); {fix}.")
        if purpose == "resume":
            raise UserError(f"{path} is not a lico-bench manifest; {fix}.")
    if purpose == "resume" and man.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path.parent} was written by an incompatible lico-bench (manifest format "
                        f"{man.get('format')}, this one reads {MANIFEST_FORMAT}); use another --out.")
    if purpose == "rerun":
        fmt = man.get("format") if isinstance(man, dict) else None
        if fmt != MANIFEST_FORMAT or not isinstance(man.get("spec"), dict):
            wrote = (man.get("versions") or {}).get("lico-bench") if isinstance(man, dict) else None
            raise UserError(f"manifest {str(path)!r} has format {fmt!r}; this lico-bench reads "
                            f"format {MANIFEST_FORMAT}; re-run it with the lico-bench that wrote it"
                            + (f" ({wrote})." if wrote else "."))
    return man


def is_manifest(data: Any) -> bool:
    """Whether ``data`` (a parsed config file) is a whole manifest rather than a spec."""
    return isinstance(data, dict) and "format" in data and "spec" in data

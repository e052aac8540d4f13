"""Files from outside are data, never code. Each reader of a pickle-based file a user can
hand over - a shared checkpoint (``run --checkpoint``), a model.pt or last.pt in a runs
folder, a maps file in a results directory, a CIFAR batch under ``--root`` - is given a
real payload: a file that is valid in every other way but also holds an object whose
unpickling creates a marker file (what ``os.system`` would do in an attack). The command
ends in one line naming the file as unsafe, the marker never appears, and nothing is
written. A control loads the same file the unsafe way and sees the marker appear, so the
payload is live."""
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lico_bench.data.cifar import CIFAR10_CLASSES
from lico_bench.io import torch_save
from tests.reliability.common import chdir, cli_error, cli_ok, train_argv

UNSAFE = "or an unsafe one"


def _touch(path: str) -> None:
    Path(path).write_text("the payload ran\n")


class Payload:
    """Unpickling this calls ``_touch(marker)``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _assert_live(path: Path, marker: Path, load) -> None:
    """The control: the unsafe load of the same file runs the payload."""
    assert not marker.exists()
    try:
        load(path)
    except Exception:
        pass  # the object it returned may not fit what the reader wanted; it has run
    assert marker.exists(), "the payload did not run under an unsafe load: the test proves nothing"


def _unsafe_torch(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _poisoned_checkpoint(src: str, dst: Path, marker: Path) -> Path:
    """A valid model.pt (it loads and runs) with a payload added to ``extra``."""
    obj = torch.load(src, map_location="cpu", weights_only=True)
    obj["extra"]["note"] = Payload(marker)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, dst)
    return dst


def _run(ckpt, out, *extra):
    return ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--batch-size", "4", "--device", "cpu", "--quiet", "--no-train", "--out", str(out),
            *(["--checkpoint", str(ckpt)] if ckpt else []), *extra]


def test_shared_checkpoint_with_a_payload(capsys, ckpts, tmp_path):
    """``run --checkpoint MODEL=FILE`` with a checkpoint someone shared: a valid model.pt
    with an object added to ``extra``. Refused unread; before this change the run finished
    normally and said nothing, the payload having run."""
    marker = tmp_path / "marker"
    evil = _poisoned_checkpoint(ckpts["baseline_tiny"], tmp_path / "shared" / "model.pt", marker)
    cli_error(capsys, _run(f"baseline_tiny={evil}", tmp_path / "out"),
              f"checkpoint {str(evil)!r} is not a lico-bench checkpoint, {UNSAFE}",
              watch=[tmp_path])
    assert not (tmp_path / "out").exists()
    _assert_live(evil, marker, _unsafe_torch)


def test_checkpoint_in_the_runs_folder_with_a_payload(capsys, ckpts, tmp_path):
    """The model.pt a run finds in its runs folder (no --checkpoint)."""
    marker = tmp_path / "marker"
    evil = _poisoned_checkpoint(ckpts["baseline_tiny"],
                                tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0" / "model.pt",
                                marker)
    cli_error(capsys, _run(None, tmp_path / "out", "--runs", str(tmp_path / "runs")), UNSAFE,
              watch=[tmp_path])
    _assert_live(evil, marker, _unsafe_torch)


def _poisoned_state(tmp_path, capsys, marker) -> Path:
    """A real last.pt (one finished epoch of 2) with a payload in its history."""
    with chdir(tmp_path):
        cli_ok(capsys, train_argv("runs", epochs=1))
    last = tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    (last.parent / "model.pt").unlink()
    state = torch.load(last, map_location="cpu", weights_only=True)
    state["history"][0]["note"] = Payload(marker)
    torch.save(state, last)
    return last


def test_training_state_with_a_payload_on_resume(capsys, tmp_path):
    """``train --resume`` with a last.pt that carries a payload: refused unread, nothing
    written (the run folder is left as it was)."""
    marker = tmp_path / "marker"
    last = _poisoned_state(tmp_path, capsys, marker)
    with chdir(tmp_path):
        cli_error(capsys, train_argv("runs", epochs=2, extra=["--resume"]),
                  f"training state {Path('runs/shapes/baseline_tiny/seed0/last.pt')} is not a "
                  f"lico-bench training state, {UNSAFE}", watch=[tmp_path])
    _assert_live(last, marker, _unsafe_torch)


def test_training_state_with_a_payload_found_by_run(capsys, tmp_path):
    """A ``run`` that trains a missing checkpoint resumes from the last.pt it finds in
    --runs: the same refusal."""
    marker = tmp_path / "marker"
    last = _poisoned_state(tmp_path, capsys, marker)
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--device", "cpu", "--quiet", "--runs", "runs", "--out", "res",
            "--train-option", "n_train=128", "--train-option", "batch_size=32",
            "--train-option", "epochs=2"]
    with chdir(tmp_path):
        cli_error(capsys, argv, "training state", UNSAFE, watch=[tmp_path / "runs"])
    _assert_live(last, marker, _unsafe_torch)


def test_maps_file_with_a_payload(capsys, ckpts, tmp_path):
    """``figures`` on a results directory whose maps/*.pt carries a payload."""
    marker = tmp_path / "marker"
    out = tmp_path / "res"
    cli_ok(capsys, _run(ckpts["baseline_tiny"], out))
    maps = next((out / "maps").glob("*.pt"))
    obj = torch.load(maps, weights_only=True)
    obj["note"] = Payload(marker)
    torch.save(obj, maps)
    cli_error(capsys, ["figures", str(out), "--format", "png"],
              f"maps file {maps} is not a lico-bench maps file, {UNSAFE}", watch=[tmp_path])
    _assert_live(maps, marker, _unsafe_torch)


def _cifar_test_batch(extra=None) -> dict:
    rng = np.random.default_rng(0)
    d = {b"batch_label": b"testing batch 1 of 1",
         b"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8),
         b"labels": [0, 1, 2, 3], b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    d.update(extra or {})
    return d


@pytest.mark.parametrize("where", ["test_batch", "batches.meta"])
def test_cifar_file_with_a_payload(capsys, tmp_path, where):
    """A CIFAR-10 batch (or its meta file) under --root that is readable CIFAR data plus a
    payload: refused by the restricted unpickler, which admits only what the real files
    hold (dicts, lists, str/bytes, numpy arrays). The same files without the payload load."""
    marker = tmp_path / "marker"
    root = tmp_path / "data"
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batch = _cifar_test_batch({b"note": Payload(marker)} if where == "test_batch" else None)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
    if where == "batches.meta":
        meta[b"note"] = Payload(marker)
    (d / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    argv = ["dataset", "show", "cifar10", "--split", "test", "--root", str(root), "-n", "4",
            "--out", str(tmp_path / "grid.png")]
    cli_error(capsys, argv, f"{d / where} is not a CIFAR file, {UNSAFE}",
              "tests.reliability.test_untrusted_files._touch", watch=[tmp_path])
    assert not (tmp_path / "grid.png").exists()
    _assert_live(d / where, marker, lambda p: pickle.loads(p.read_bytes()))
    # the format itself stays readable: the same files without the payload
    (d / "test_batch").write_bytes(pickle.dumps(_cifar_test_batch(), protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]},
                                                  protocol=2))
    cli_ok(capsys, argv)
    assert (tmp_path / "grid.png").exists()


def test_files_lico_bench_writes_hold_only_tensors_and_plain_containers(tmp_path):
    """What we write loads with weights_only=True (so the safe readers above lose
    nothing); a value that would need an unsafe load is refused when written, and the
    previous file stays."""
    path = torch_save({"w": torch.ones(2), "p": tmp_path, "n": np.float32(0.5)}, tmp_path / "a.pt")
    back = torch.load(path, weights_only=True)
    assert back["p"] == str(tmp_path) and back["n"] == 0.5 and torch.equal(back["w"], torch.ones(2))
    good = path.read_bytes()
    with pytest.raises(TypeError, match="only tensors and plain containers"):
        torch_save({"w": torch.zeros(2), "obj": Payload(tmp_path / "never")}, path)
    assert path.read_bytes() == good


def test_torchscript_clip_archive_with_a_payload(capsys, tmp_path):
    """``train --text-encoder clip --text-checkpoint x.pt`` with a TorchScript archive whose
    ``ln_final`` module has a ``__setstate__`` (archive code that ``torch.jit.load`` runs
    while loading). Before this change the CLIP loader fell back to ``torch.jit.load`` and
    the code ran; now the archive's tensors are read without running it, and a module whose
    state only its code can rebuild is refused in one line that says how to convert a
    trusted file to a state dict. Control: ``torch.jit.load`` of the same file runs the
    payload (the weights it returns are the payload's 7s, not the stored ones)."""
    from tests.lico.conftest import write_tiny_clip, write_torchscript_clip

    _, sd = write_tiny_clip(tmp_path / "clip", width=64, layers=1)
    evil = write_torchscript_clip(tmp_path / "clip" / "ViT-B-32.pt", sd, payload=True)
    argv = ["train", "--model", "lico_tiny", "--text-encoder", "clip", "--text-checkpoint",
            str(evil), "--n-train", "64", "--batch-size", "32", "--epochs", "1", "--device",
            "cpu", "--quiet", "--out", str(tmp_path / "runs")]
    cli_error(capsys, argv, f"CLIP checkpoint {str(evil)!r}: module 'ln_final.' stores its "
              "state through its own code (__setstate__), which lico-bench does not run",
              "convert it to a state dict with: python -c", "torch.jit.load(", "state_dict()",
              watch=[tmp_path])
    assert not (tmp_path / "runs").exists()
    # the control: the unsafe load runs the archive's __setstate__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # torch.jit.load deprecation
        loaded = torch.jit.load(str(evil), map_location="cpu").state_dict()
    assert torch.equal(loaded["ln_final.weight"], torch.full_like(sd["ln_final.weight"], 7.0))
    assert not torch.equal(sd["ln_final.weight"], loaded["ln_final.weight"]), \
        "the payload did not run under torch.jit.load: the test proves nothing"

"""Image folders that would hang, loop or exhaust memory: a FIFO named like an image, an
image that is a symlink to /dev/zero, a directory symlink back into the tree, an image
whose header claims more pixels than PIL's bomb threshold, a file over the size bound.
Each ends in one line, exit status 2, and no file written; a SIGALRM guard turns a hang
(the failure these tests exist for) into a failed test instead of a stuck suite."""
import os
import shutil
import signal
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from lico_bench.data.folder import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from tests.reliability.common import cli_error, cli_ok

GUARD_S = 60   # far above the ~1 s these commands take; only a hang reaches it


@contextmanager
def no_hang(seconds: int = GUARD_S):
    def _fail(signum, frame):
        raise AssertionError(f"the command hung (no answer after {seconds} s)")

    old = signal.signal(signal.SIGALRM, _fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _folder(root):
    """ROOT/test/{cls0,cls1}/ with 3 small PNGs each."""
    for c in range(2):
        for k in range(3):
            p = root / "test" / f"cls{c}" / f"img{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * k, 100 * c, 7)).save(p)
    return root


def _show(root, out):
    return ["dataset", "show", "imagefolder", "--split", "test", "--root", str(root), "-n", "6",
            "--out", str(out)]


def test_the_folder_itself_is_read(capsys, tmp_path):
    """The control of this file: the untouched folder shows all 6 images."""
    root = _folder(tmp_path / "data")
    cli_ok(capsys, _show(root, tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").exists()


def test_directory_symlink_loop(capsys, tmp_path):
    """``ln -s .. test/cls0/loop``: before, 246 images instead of 6, cls1's labelled cls0."""
    root = _folder(tmp_path / "data")
    os.symlink("..", root / "test" / "cls0" / "loop")
    with no_hang():
        cli_error(capsys, _show(root, tmp_path / "grid.png"), "directory symlink",
                  str(root / "test" / "cls0" / "loop"), "points back into the image tree",
                  watch=[tmp_path])


def test_fifo_named_like_an_image(capsys, tmp_path):
    """A FIFO ``x.png`` in a class folder: before, reading it waited forever for a writer."""
    root = _folder(tmp_path / "data")
    fifo = root / "test" / "cls0" / "a.png"       # sorts first: the first image read
    os.mkfifo(fifo)
    with no_hang():
        cli_error(capsys, _show(root, tmp_path / "grid.png"), f"image {fifo} is not a regular "
                  "file", watch=[tmp_path])


def test_image_symlinked_to_dev_zero(capsys, tmp_path):
    """An image that is a symlink to /dev/zero: an endless stream of zeros."""
    root = _folder(tmp_path / "data")
    link = root / "test" / "cls0" / "a.png"
    os.symlink("/dev/zero", link)
    with no_hang():
        cli_error(capsys, _show(root, tmp_path / "grid.png"), f"image {link} is not a regular "
                  "file", watch=[tmp_path])


def _png_header_only(path, width, height):
    """A PNG whose IHDR (valid CRCs) claims width x height, with an empty IDAT: PIL reads
    the header lazily, so this costs bytes, not memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


@pytest.mark.parametrize("factor", [1, 2])
def test_image_over_the_pixel_bound(capsys, tmp_path, factor):
    """A header claiming just over MAX_IMAGE_PIXELS (PIL only warns there: several lines of
    stderr, then ~270 MB decoded) or over twice it (PIL's own error)."""
    root = _folder(tmp_path / "data")
    side = int((factor * MAX_IMAGE_PIXELS) ** 0.5) + 1
    _png_header_only(root / "test" / "cls0" / "a.png", side, side)
    cli_error(capsys, _show(root, tmp_path / "grid.png"), str(root / "test" / "cls0" / "a.png"),
              f"more than {MAX_IMAGE_PIXELS}", watch=[tmp_path])


def test_image_file_over_the_size_bound(capsys, tmp_path):
    """A (sparse) .png of MAX_IMAGE_BYTES + 1 bytes: refused from its size, unread."""
    root = _folder(tmp_path / "data")
    big = root / "test" / "cls0" / "a.png"
    with open(big, "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    cli_error(capsys, _show(root, tmp_path / "grid.png"), f"image {big} is "
              f"{MAX_IMAGE_BYTES + 1} bytes, over the limit", watch=[tmp_path])


def test_format_outside_the_listed_ones(capsys, tmp_path):
    """An EPS file named .png: PIL would hand it to Ghostscript; only the formats the
    extensions name are tried."""
    root = _folder(tmp_path / "data")
    eps = root / "test" / "cls0" / "a.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n")
    cli_error(capsys, _show(root, tmp_path / "grid.png"), f"cannot read image {eps}",
              "not a JPEG, PNG, PPM, BMP, TIFF or WEBP image", watch=[tmp_path])


# ------------------------------------------------------------------ results and config files
def test_rows_file_symlinked_to_dev_zero(capsys, reference_run, tmp_path):
    """A rows file that is a symlink to /dev/zero: before, ``report`` read until killed."""
    res = tmp_path / "res"
    shutil.copytree(reference_run["dir"], res)
    f = next((res / "rows").glob("*.jsonl"))
    f.unlink()
    os.symlink("/dev/zero", f)
    with no_hang():
        cli_error(capsys, ["report", str(res)], f"rows file {f} is not a regular file",
                  watch=[tmp_path])


def test_manifest_symlinked_to_dev_zero(capsys, reference_run, tmp_path):
    res = tmp_path / "res"
    shutil.copytree(reference_run["dir"], res)
    (res / "manifest.json").unlink()
    os.symlink("/dev/zero", res / "manifest.json")
    with no_hang():
        cli_error(capsys, ["report", str(res)], "no manifest.json", watch=[tmp_path])


def _deep(kind: str, depth: int) -> str:
    if kind == "json":
        return '{"models": ' + "[" * depth + "]" * depth + "}"
    if kind == "yaml":
        return "models: " + "[" * depth + "]" * depth + "\n"
    return "models = " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("kind,depth", [("json", 100_000), ("yaml", 5_000), ("toml", 5_000),
                                        ("json", 40)])
def test_config_nested_too_deep(capsys, tmp_path, kind, depth):
    """A config nested 5 000 (YAML/TOML) or 100 000 (JSON) deep was a RecursionError
    traceback; 40 deep parses but is past the declared bound of 32."""
    cfg = tmp_path / f"deep.{kind}"
    cfg.write_text(_deep(kind, depth))
    cli_error(capsys, ["run", "--config", str(cfg), "--quiet"], f"config file {str(cfg)!r} nests",
              watch=[tmp_path])


def test_config_symlinked_to_dev_zero(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    os.symlink("/dev/zero", cfg)
    with no_hang():
        cli_error(capsys, ["run", "--config", str(cfg), "--quiet"], f"config file {str(cfg)!r}",
                  watch=[tmp_path])


# ---------------------------------------------------------------------------- typed fields
def _cifar_root(tmp_path, labels, n=4):
    """A CIFAR-10 test batch of ``n`` images with ``labels`` (and the meta file)."""
    import pickle

    from lico_bench.data.cifar import CIFAR10_CLASSES

    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels,
             b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
             b"filenames": [b"x.png"] * n}
    (d / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, protocol=2))
    return tmp_path / "data", d / "test_batch"


@pytest.mark.parametrize("labels,n,needle", [
    (["a", "b", "c", "d"], 4, "labels[0] must be an integer, got 'a'"),
    ([0.5, 1.5, 2, 3], 4, "labels[0] must be an integer, got 0.5"),   # was truncated to 0
    (5, 4, "labels must be a list of integers, got 5"),
    ([], 0, "hold no images"),                                         # was a matplotlib traceback
], ids=["text", "floats", "an-int", "empty-batch"])
def test_cifar_batch_with_bad_labels(capsys, tmp_path, labels, n, needle):
    root, batch = _cifar_root(tmp_path, labels, n)
    cli_error(capsys, ["dataset", "show", "cifar10", "--split", "test", "--root", str(root), "-n",
                       "4", "--out", str(tmp_path / "grid.png")], str(batch), needle,
              watch=[tmp_path])


def _voc_root(tmp_path, box=("1", "1", "10", "10"), size=("20", "20"), listing=b"000001\n"):
    """A VOC 2007 test split of one 20x20 JPEG with one dog."""
    v = tmp_path / "voc" / "VOC2007"
    for s in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (v / s).mkdir(parents=True)
    Image.new("RGB", (20, 20), (100, 50, 20)).save(v / "JPEGImages" / "000001.jpg")
    (v / "Annotations" / "000001.xml").write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size><object>"
        f"<name>dog</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}"
        f"</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>")
    (v / "ImageSets" / "Main" / "test.txt").write_bytes(listing)
    return tmp_path / "voc", v


def _show_voc(root, tmp_path):
    return ["dataset", "show", "voc2007", "--split", "test", "--root", str(root), "-n", "1",
            "--out", str(tmp_path / "grid.png")]


@pytest.mark.parametrize("kw,needle", [
    (dict(box=("inf", "1", "10", "10")), "<xmin> is 'inf', not a pixel coordinate"),
    (dict(box=("1", "1", "1e400", "10")), "<xmax> is '1e400', not a pixel coordinate"),
    (dict(box=("1", "1", "nan", "10")), "<xmax> is 'nan', not a pixel coordinate"),
    (dict(box=("1", "1", "1e30", "10")), "<xmax> is '1e30', not a pixel coordinate"),
    (dict(size=("1e400", "20")), "<width> is '1e400', not a pixel coordinate"),
    (dict(listing=b"\xff\xfe000001\n"), "is not UTF-8 text"),
    (dict(listing=b"../../../etc/passwd\n"), "lists '../../../etc/passwd', not an image id"),
], ids=["inf", "1e400", "nan", "1e30", "size-1e400", "list-not-utf8", "list-path"])
def test_voc_files_with_bad_values(capsys, tmp_path, kw, needle):
    root, _ = _voc_root(tmp_path, **kw)
    with no_hang():
        cli_error(capsys, _show_voc(root, tmp_path), needle, watch=[tmp_path])


def test_voc_list_that_is_a_fifo(capsys, tmp_path):
    """The split's list file is a FIFO: not taken for the list (held: the loader looks for
    regular files), never waited on."""
    root, v = _voc_root(tmp_path)
    lst = v / "ImageSets" / "Main" / "test.txt"
    lst.unlink()
    os.mkfifo(lst)
    with no_hang():
        cli_error(capsys, _show_voc(root, tmp_path), "PASCAL VOC 2007 test not found under",
                  watch=[tmp_path])


def test_voc_control_reads(capsys, tmp_path):
    """The same files with good values are read (the cases above fail for their value)."""
    root, _ = _voc_root(tmp_path)
    cli_ok(capsys, _show_voc(root, tmp_path))
    assert (tmp_path / "grid.png").is_file()


# ---------------------------------------------------------------------------- torch and check files
NOT_REGULAR = "is not a regular file (a FIFO, device or socket, e.g. a symlink to /dev/zero)"


def _special(path, kind):
    """Replace ``path`` by a FIFO, a symlink to /dev/zero or a folder."""
    if path.exists():
        path.unlink()
    {"fifo": os.mkfifo, "zero": lambda p: os.symlink("/dev/zero", p), "dir": os.mkdir}[kind](path)


@pytest.mark.parametrize("kind,needle", [
    ("fifo", NOT_REGULAR), ("zero", NOT_REGULAR),
    ("dir", "is a folder; pass the checkpoint file in it"),
])
def test_checkpoint_that_is_no_regular_file(capsys, ckpts, tmp_path, kind, needle):
    """``--checkpoint`` naming a FIFO, /dev/zero or a folder: each was "does not exist"."""
    ck = tmp_path / "model.pt"
    _special(ck, kind)
    argv = ["run", "--model", "baseline_tiny", "--method", "gradcam", "--n-images", "4",
            "--device", "cpu", "--quiet", "--no-train", "--out", str(tmp_path / "res"),
            "--checkpoint", f"baseline_tiny={ck}"]
    with no_hang():
        cli_error(capsys, argv, f"checkpoint {str(ck)!r} {needle}", watch=[tmp_path])


@pytest.fixture
def res(tmp_path, reference_run):
    shutil.copytree(reference_run["dir"], tmp_path / "res")
    return tmp_path / "res"


@pytest.mark.parametrize("which", ["inputs", "maps"])
def test_figure_files_that_are_fifos(capsys, res, which):
    """inputs.pt or a maps file replaced by a FIFO: ``figures`` hung in torch.load."""
    p = res / "inputs.pt" if which == "inputs" else sorted((res / "maps").glob("*.pt"))[0]
    _special(p, "fifo")
    with no_hang():
        cli_error(capsys, ["figures", str(res), "--format", "png"], str(p), NOT_REGULAR,
                  watch=[res.parent])


def test_check_file_that_is_a_fifo(capsys, res):
    """A rows file's check file replaced by a FIFO: ``report`` hung reading it."""
    f = sorted((res / "rows").glob("*.jsonl"))[0]
    c = f.with_name(f.name[: -len(".jsonl")] + ".check.json")
    _special(c, "fifo")
    with no_hang():
        cli_error(capsys, ["report", str(res)], f"rows file {f} is damaged: its check file "
                  f"{c.name} is not readable", watch=[res.parent])


def test_training_state_that_is_a_fifo(capsys, tmp_path, reference_training):
    """``train --resume`` with last.pt replaced by a FIFO: it hung in torch.load."""
    from tests.reliability.common import chdir, train_argv

    shutil.copytree(reference_training.parents[3], tmp_path / "runs")
    last = tmp_path / "runs" / "shapes" / "baseline_tiny" / "seed0" / "last.pt"
    _special(last, "fifo")
    with chdir(tmp_path), no_hang():
        cli_error(capsys, train_argv("runs", epochs=5, extra=["--resume"]),
                  f"training state {last.relative_to(tmp_path)} {NOT_REGULAR}", watch=[tmp_path])


def _png_named_jpg(d):
    (d / "p.jpg").write_bytes((d / "img0.png").read_bytes())


@pytest.mark.parametrize("make", [
    lambda d: Image.fromarray(np.zeros((16, 16), dtype=np.uint16)).save(d / "a.png"),
    lambda d: Image.new("CMYK", (16, 16)).save(d / "c.jpg"),
    _png_named_jpg,
    lambda d: Image.new("RGB", (1, 1)).save(d / "one.png"),
    lambda d: Image.new("RGB", (20000, 1)).save(d / "wide.png"),
    lambda d: Image.new("RGB", (8, 8)).save(d / "a\nb.png"),
], ids=["16-bit", "cmyk", "png-named-jpg", "1x1", "20000x1", "newline-in-name"])
def test_odd_but_valid_images_are_read(capsys, tmp_path, make):
    """Held: each is read as an RGB image (7 images in the split)."""
    root = _folder(tmp_path / "data")
    make(root / "test" / "cls0")
    with no_hang():
        cli_ok(capsys, ["dataset", "show", "imagefolder", "--split", "test", "--root", str(root),
                        "-n", "7", "--out", str(tmp_path / "grid.png")])
    assert (tmp_path / "grid.png").is_file()


@pytest.mark.parametrize("make,needle", [
    (lambda d: (d / "z.png").write_bytes(b""), "not a JPEG, PNG, PPM, BMP, TIFF or WEBP image"),
    (lambda d: (d / "t.png").write_bytes((d / "img0.png").read_bytes()[:60]),
     "image file is truncated"),
    (lambda d: (d / "x.png").write_text("hello"), "not a JPEG, PNG, PPM, BMP, TIFF or WEBP image"),
], ids=["zero-bytes", "truncated-png", "text-named-png"])
def test_broken_images_are_one_line(capsys, tmp_path, make, needle):
    """Held: one line naming the file."""
    root = _folder(tmp_path / "data")
    make(root / "test" / "cls0")
    with no_hang():
        cli_error(capsys, _show(root, tmp_path / "grid.png"), "cannot read image", needle,
                  watch=[tmp_path])

"""Real-dataset loaders on tiny files written here in the datasets' own on-disk formats."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lico_bench.data import create_dataset, list_datasets
from lico_bench.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_CLASSES
from lico_bench.data.folder import IMAGENETTE_WNIDS
from lico_bench.data.common import ResizedTensorDataset
from lico_bench.data.svhn import SVHN_MEAN, SVHN_STD
from lico_bench.data.voc import VOC_CLASSES, boxes_to_mask
from lico_bench.errors import UserError

from ..tolerance import f32_tol

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalised(value, mean, std):
    """[3] float32: a uint8 grey ``value`` after normalisation."""
    return (value / 255.0 - torch.tensor(mean)) / torch.tensor(std)


def grey_tol(value, mean, std, taps=1):
    """Bound on |a dataset's pixel of a constant grey image - normalised(value)|.

    The dataset: /255, a resize (``taps`` weights per axis summing to 1, two passes; 1 = no
    resize) and (x - mean) / std; the test: 3 roundings. Magnitude (value/255 + mean) / std
    per channel (the largest); accumulations of taps + 3 terms, depth 2, two computations.
    """
    mag = float(((value / 255.0 + torch.tensor(mean)) / torch.tensor(std)).max())
    return f32_tol(taps + 3, mag, depth=2)


# --- CIFAR ------------------------------------------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as in the real CIFAR files (pickled by
    Python 2, protocol 2): loaded with encoding="latin1" they become ``str``, and the numpy
    buffer a latin-1 ``str``, which is the path torchvision exercises."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_pickle(path, obj, py2=True):
    with open(path, "wb") as f:
        if py2:
            Py2Pickler(f, protocol=2).dump(obj)
        else:  # a Python 3 re-pickle: bytes keys survive as bytes
            pickle.dump(obj, f, protocol=2)


def cifar_batch(rng, n, labels_key, n_classes, title):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, n_classes, size=n)]
    d = {b"batch_label": title.encode(), b"data": data, labels_key: labels,
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return d, data, labels


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    train_data, train_labels = [], []
    for i in range(1, 6):
        batch, data, labels = cifar_batch(rng, 2, b"labels", 10, f"training batch {i} of 5")
        write_pickle(d / f"data_batch_{i}", batch)
        train_data.append(data)
        train_labels += labels
    batch, test_data, test_labels = cifar_batch(rng, 3, b"labels", 10, "testing batch 1 of 1")
    test_data[0] = 128  # a constant grey image, for the normalisation check
    batch[b"data"] = test_data
    write_pickle(d / "test_batch", batch)
    write_pickle(d / "batches.meta", {b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                      b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    return root, np.concatenate(train_data), train_labels, test_data, test_labels


def test_cifar10_reads_python2_pickles(cifar10_root):
    root, train_data, train_labels, test_data, test_labels = cifar10_root
    ds = create_dataset("cifar10", "train", root=root)
    assert ds.info.name == "cifar10" and ds.info.class_names == CIFAR10_CLASSES
    assert ds.info.class_names[0] == "airplane" and ds.info.class_names[9] == "truck"
    assert (ds.info.mean, ds.info.std, ds.info.image_size) == (CIFAR10_MEAN, CIFAR10_STD, 32)
    assert not ds.info.has_masks and ds.info.num_classes == 10
    assert len(ds) == 10 and ds.images.dtype == torch.uint8
    assert ds.images.shape == (10, 3, 32, 32)
    assert ds.labels.tolist() == train_labels
    # Row layout: 1024 R, then G, then B values, each plane row-major.
    for i, (c, y, x) in enumerate([(0, 0, 0), (0, 0, 31), (1, 5, 7), (2, 31, 30)]):
        assert ds.images[i, c, y, x] == train_data[i, c * 1024 + y * 32 + x]

    test = create_dataset("cifar10", "test", root=root)
    assert len(test) == 3 and test.labels.tolist() == test_labels
    img, label, mask = test[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and mask is None
    assert label == test_labels[0]
    assert (img - normalised(128, CIFAR10_MEAN, CIFAR10_STD).view(3, 1, 1)).abs().max() \
        <= grey_tol(128, CIFAR10_MEAN, CIFAR10_STD)
    batch = test.get_batch([2, 0])
    assert batch.images.shape == (2, 3, 32, 32) and batch.masks is None
    assert batch.labels.tolist() == [test_labels[2], test_labels[0]]


def test_cifar_val_holdout_is_seeded_and_disjoint(cifar10_root):
    root, _, train_labels, _, _ = cifar10_root
    full = create_dataset("cifar10", "train", root=root)
    val = create_dataset("cifar10", "val", root=root, val_size=3, seed=1)
    rest = create_dataset("cifar10", "train", root=root, val_size=3, seed=1)
    assert len(val) == 3 and len(rest) == 7 and val.info.extra["val_size"] == 3

    def rows(ds):
        return {bytes(ds.images[i].numpy().tobytes()) for i in range(len(ds))}

    assert rows(val).isdisjoint(rows(rest)) and rows(val) | rows(rest) == rows(full)
    again = create_dataset("cifar10", "val", root=root, val_size=3, seed=1)
    assert torch.equal(again.images, val.images)
    other = create_dataset("cifar10", "val", root=root, val_size=3, seed=2)
    assert not torch.equal(other.images, val.images)
    assert len(create_dataset("cifar10", "val", root=root)) == 1  # default: 10 % of train
    with pytest.raises(UserError, match="val_size"):
        create_dataset("cifar10", "val", root=root, val_size=10)


def test_cifar_resizes_on_access(cifar10_root):
    root = cifar10_root[0]
    ds = create_dataset("cifar10", "test", root=root, image_size=64)
    assert isinstance(ds, ResizedTensorDataset) and ds.info.image_size == 64
    assert ds.images.shape == (3, 3, 32, 32)  # stored at the files' size
    img, _, _ = ds[0]
    assert img.shape == (3, 64, 64)
    # bilinear upsampling x2: 2 taps per axis
    assert (img - normalised(128, CIFAR10_MEAN, CIFAR10_STD).view(3, 1, 1)).abs().max() \
        <= grey_tol(128, CIFAR10_MEAN, CIFAR10_STD, taps=2)
    assert ds.get_batch([0, 1]).images.shape == (2, 3, 64, 64)


def test_cifar100_fine_labels_and_python3_pickles(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(1)
    batch, data, labels = cifar_batch(rng, 4, b"fine_labels", 100, "training batch 1 of 1")
    batch[b"coarse_labels"] = [0, 1, 2, 3]
    batch[b"fine_labels"] = labels = [0, 99, 4, 51]
    write_pickle(d / "train", batch, py2=False)
    write_pickle(d / "test", batch, py2=False)
    write_pickle(d / "meta", {b"fine_label_names": [c.encode() for c in CIFAR100_CLASSES],
                              b"coarse_label_names": [b"aquatic_mammals"] * 20}, py2=False)
    ds = create_dataset("cifar100", "train", root=tmp_path)
    assert len(CIFAR100_CLASSES) == len(set(CIFAR100_CLASSES)) == 100
    assert ds.info.class_names == CIFAR100_CLASSES and ds.info.num_classes == 100
    assert ds.info.class_names[0] == "apple" and ds.info.class_names[99] == "worm"
    assert ds.labels.tolist() == labels
    assert torch.equal(ds.images, torch.from_numpy(data.reshape(4, 3, 32, 32)))


def test_cifar_meta_checked_and_optional(tmp_path, cifar10_root):
    src = cifar10_root[0] / "cifar-10-batches-py"
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for f in src.iterdir():
        if f.name != "batches.meta":
            (d / f.name).write_bytes(f.read_bytes())
    # Without the meta file the names are the known, fixed list.
    assert create_dataset("cifar10", "test", root=tmp_path).info.class_names == CIFAR10_CLASSES
    write_pickle(d / "batches.meta", {b"label_names": [c.encode() for c in reversed(CIFAR10_CLASSES)]})
    with pytest.raises(UserError, match="standard order"):
        create_dataset("cifar10", "test", root=tmp_path)
    (d / "batches.meta").unlink()
    (d / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch"):
        create_dataset("cifar10", "test", root=tmp_path)


def test_cifar_missing_files_say_what_and_where(tmp_path, monkeypatch):
    with pytest.raises(UserError) as e:
        create_dataset("cifar10", "train", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "download=True" in msg and "cs.toronto.edu" in msg and "\n" not in msg
    with pytest.raises(UserError, match="cifar-100-python"):
        create_dataset("cifar100", "test", root=tmp_path)
    # root=None: $LICO_BENCH_DATA, then ./data.
    monkeypatch.setenv("LICO_BENCH_DATA", str(tmp_path / "envroot"))
    with pytest.raises(UserError, match="envroot"):
        create_dataset("cifar10", "test")
    monkeypatch.delenv("LICO_BENCH_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="data/cifar-10-batches-py"):
        create_dataset("cifar10", "test")


def test_default_root_from_environment(cifar10_root, monkeypatch):
    monkeypatch.setenv("LICO_BENCH_DATA", str(cifar10_root[0]))
    assert len(create_dataset("cifar10", "test")) == 3


def test_cifar_bad_split_and_option(cifar10_root):
    root = cifar10_root[0]
    with pytest.raises(UserError, match="unknown split"):
        create_dataset("cifar10", "extra", root=root)
    with pytest.raises(UserError, match="unknown option"):
        create_dataset("cifar10", "test", root=root, include_difficult=True)


# --- SVHN -------------------------------------------------------------------------------

def write_svhn(path, X, y):
    import scipy.io

    scipy.io.savemat(str(path), {"X": X, "y": y})


def test_svhn_labels_orientation_and_names(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    X[..., 4] = 200
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)  # 10 is the digit 0
    write_svhn(tmp_path / "test_32x32.mat", X, y)
    ds = create_dataset("svhn", "test", root=tmp_path)
    assert ds.info.class_names == ("zero", "one", "two", "three", "four", "five", "six",
                                   "seven", "eight", "nine")
    assert ds.labels.tolist() == [0, 1, 9, 0, 5]
    assert ds.images.shape == (5, 3, 32, 32) and ds.images.dtype == torch.uint8
    for n, c, h, w in [(0, 0, 0, 1), (1, 2, 7, 3), (3, 1, 31, 0)]:
        assert ds.images[n, c, h, w] == X[h, w, c, n]  # X is [H, W, C, N]
    img, label, mask = ds[4]
    assert label == 5 and mask is None
    assert (img - normalised(200, SVHN_MEAN, SVHN_STD).view(3, 1, 1)).abs().max() \
        <= grey_tol(200, SVHN_MEAN, SVHN_STD)


def test_svhn_subfolder_val_and_missing(tmp_path):
    (tmp_path / "svhn").mkdir()
    X = np.zeros((32, 32, 3, 20), dtype=np.uint8)
    X[0, 0, 0, :] = np.arange(20)  # tag each image
    write_svhn(tmp_path / "svhn" / "train_32x32.mat", X, np.full((20, 1), 3, dtype=np.uint8))
    val = create_dataset("svhn", "val", root=tmp_path)
    train = create_dataset("svhn", "train", root=tmp_path, val_size=2)
    assert len(val) == 2 and len(train) == 18
    tags = set(val.images[:, 0, 0, 0].tolist()) | set(train.images[:, 0, 0, 0].tolist())
    assert tags == set(range(20))
    with pytest.raises(UserError) as e:
        create_dataset("svhn", "extra", root=tmp_path)
    assert str(tmp_path / "extra_32x32.mat") in str(e.value) and "ufldl" in str(e.value)


# --- image folders ----------------------------------------------------------------------

def save(path, size, colour, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def test_imagefolder_classes_labels_and_transform(tmp_path):
    save(tmp_path / "train" / "dog" / "a.png", (40, 30), (128, 128, 128))
    save(tmp_path / "train" / "dog" / "sub" / "b.JPEG", (30, 40), (10, 200, 30), fmt="JPEG")
    save(tmp_path / "train" / "cat" / "c.jpg", (50, 50), (0, 0, 255))
    save(tmp_path / "train" / "bird" / "d.bmp", (20, 20), (255, 0, 0))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".cache").mkdir()
    save(tmp_path / "val" / "dog" / "e.png", (64, 48), (128, 128, 128))
    save(tmp_path / "val" / "cat" / "f.png", (64, 48), (0, 0, 255))

    train = create_dataset("imagefolder", "train", root=tmp_path, image_size=32)
    assert train.info.class_names == ("bird", "cat", "dog") and train.info.image_size == 32
    assert (train.info.mean, train.info.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert [p.split("/")[-1] for p in train.paths] == ["d.bmp", "c.jpg", "a.png", "b.JPEG"]
    assert train.labels.tolist() == [0, 1, 2, 2]
    img, label, mask = train[2]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label == 2 and mask is None
    # 64x48 -> 32x32, antialiased: at most 2 * 2 + 1 taps per axis
    assert (img - normalised(128, IMAGENET_MEAN, IMAGENET_STD).view(3, 1, 1)).abs().max() \
        <= grey_tol(128, IMAGENET_MEAN, IMAGENET_STD, taps=5)
    # The val split has no "bird" folder: the labels still match train's.
    val = create_dataset("imagefolder", "val", root=tmp_path, image_size=32)
    assert val.info.class_names == ("bird", "cat", "dog") and val.labels.tolist() == [1, 2]
    assert val.get_batch([0, 1]).images.shape == (2, 3, 32, 32)


def test_imagefolder_matches_torchvision_eval_transform(tmp_path):
    import torchvision.transforms as T

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    path = tmp_path / "train" / "x" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(arr).save(path)
    ds = create_dataset("imagefolder", "train", root=tmp_path, image_size=24)
    ref = T.Compose([T.Resize(int(24 * 256 / 224)), T.CenterCrop(24), T.ToTensor(),
                     T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.open(path).convert("RGB"))
    # the same PIL resize and crop; /255 and (x - mean) / std on both sides: 3 roundings of
    # values of magnitude (1 + mean) / std, two computations
    mag = float(((1 + torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).max())
    assert (ds[0][0] - ref).abs().max() <= f32_tol(3, mag)


def test_imagefolder_class_names_from_a_synset_mapping_file(tmp_path):
    for wnid in ("n01440764", "n02102040"):
        save(tmp_path / "train" / wnid / "a.png", (8, 8), (1, 2, 3))
    (tmp_path / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn02102040 English springer, English springer spaniel\n"
        "n09999999 unused class\n")
    ds = create_dataset("imagefolder", "train", root=tmp_path, image_size=16)
    assert ds.info.class_names == ("tench", "English springer")
    (tmp_path / "classnames.txt").write_text("n01440764 tench\n")   # first file wins, checked
    with pytest.raises(UserError, match="names no class for folder.*n02102040"):
        create_dataset("imagefolder", "train", root=tmp_path, image_size=16)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError) as e:
        create_dataset("imagefolder", "train", root=tmp_path)
    assert str(tmp_path / "train") in str(e.value)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        create_dataset("imagefolder", "train", root=tmp_path)
    (tmp_path / "train" / "empty_class").mkdir()
    with pytest.raises(UserError, match="no images found"):
        create_dataset("imagefolder", "train", root=tmp_path)
    with pytest.raises(UserError, match="cannot be downloaded"):
        create_dataset("imagefolder", "train", root=tmp_path, download=True)


def test_imagenette_wnids_to_names(tmp_path):
    base = tmp_path / "imagenette2-160"
    for k, wnid in enumerate(IMAGENETTE_WNIDS):
        save(base / "val" / wnid / f"ILSVRC_{k}.JPEG", (20, 24), (k * 20, 0, 0), fmt="JPEG")
    ds = create_dataset("imagenette", "val", root=tmp_path, image_size=16)
    assert ds.info.class_names == ("tench", "English springer", "cassette player", "chain saw",
                                   "church", "French horn", "garbage truck", "gas pump",
                                   "golf ball", "parachute")
    assert ds.labels.tolist() == list(range(10)) and ds.folders == tuple(sorted(IMAGENETTE_WNIDS))
    assert ds[3][0].shape == (3, 16, 16)
    # Also accepted: root pointing at the imagenette folder itself.
    assert len(create_dataset("imagenette", "val", root=base)) == 10
    save(base / "val" / "n99999999" / "x.png", (8, 8), (0, 0, 0))
    with pytest.raises(UserError, match="n99999999"):
        create_dataset("imagenette", "val", root=tmp_path)
    with pytest.raises(UserError, match="fastai/imagenette"):
        create_dataset("imagenette", "train", root=tmp_path / "none")


# --- VOC 2007 ---------------------------------------------------------------------------

def voc_xml(image_id, w, h, objects):
    objs = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{int(diff)}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1), diff in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objs}</annotation>")


VOC_IMAGES = {
    # id: (W, H, colour, objects: (class, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult))
    "000001": (100, 50, (128, 128, 128), [
        ("dog", (12, 6, 31, 20), False),  # centres hit both x edges
        ("person", (1, 1, 10, 10), True),
        ("dog", (41, 31, 60, 45), False),
        ("cat", (70, 10, 90, 40), True),
        ("person", (91, 41, 100, 50), False),
    ]),
    "000002": (64, 64, (0, 0, 0), [
        ("aeroplane", (1, 1, 64, 64), False),
        ("bottle", (11, 21, 11, 40), False),  # one pixel wide: thinner than the output grid
    ]),
}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    d = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (d / sub).mkdir(parents=True)
    for image_id, (w, h, colour, objects) in VOC_IMAGES.items():
        (d / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, w, h, objects))
        Image.new("RGB", (w, h), colour).save(d / "JPEGImages" / f"{image_id}.jpg", quality=95)
    (d / "ImageSets/Main/test.txt").write_text("000001\n000002\n")
    (d / "ImageSets/Main/train.txt").write_text("000002\n")
    return root


def rect(S, rows, cols):
    m = torch.zeros(S, S, dtype=torch.bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_voc_items_are_image_class_pairs(voc_root):
    ds = create_dataset("voc2007", "test", root=voc_root, image_size=50)
    assert ds.info.name == "voc2007" and ds.info.class_names == VOC_CLASSES and ds.info.has_masks
    assert VOC_CLASSES.index("aeroplane") == 0 and VOC_CLASSES.index("tvmonitor") == 19
    assert (ds.info.mean, ds.info.std, ds.info.image_size) == (IMAGENET_MEAN, IMAGENET_STD, 50)
    names = [VOC_CLASSES[c] for c in ds.labels.tolist()]
    # "cat" has only difficult boxes: skipped, as in TorchRay. Classes in label order.
    assert names == ["dog", "person", "aeroplane", "bottle"]
    assert ds.image_ids == ["000001", "000001", "000002", "000002"]
    assert ds.difficult.tolist() == [False] * 4
    present = {VOC_CLASSES[c] for c in ds.labels_all[0].nonzero().flatten().tolist()}
    assert present == {"dog", "person", "cat"} and ds.labels_all.shape == (4, 20)
    assert ds.labels_all.dtype == torch.bool

    img, label, mask = ds[0]
    assert img.shape == (3, 50, 50) and img.dtype == torch.float32
    assert mask.shape == (50, 50) and mask.dtype == torch.bool and label == VOC_CLASSES.index("dog")
    # 100x50 -> 50x50: x halves, y stays; output column j samples source column 2j + 1.
    # Dog box 1: x 11..30 (0-based) -> columns 5..14 (11 = 2*5+1 in, 31 = 2*15+1 out),
    # y 5..19 -> rows 5..19. Box 2: x 40..59 -> columns 20..29, y 30..44 -> rows 30..44.
    assert torch.equal(mask, rect(50, (5, 20), (5, 15)) | rect(50, (30, 45), (20, 30)))
    assert torch.allclose(img, normalised(128, IMAGENET_MEAN, IMAGENET_STD).view(3, 1, 1)
                          .expand(3, 50, 50), atol=2.5 / 255 / 0.224)
    # person: one difficult and one plain box -> kept, not flagged, union of both boxes.
    _, _, person = ds[1]
    assert torch.equal(person, rect(50, (0, 10), (0, 5)) | rect(50, (40, 50), (45, 50)))


def test_voc_masks_equal_nearest_resize_of_full_res_boxes(voc_root):
    ds = create_dataset("voc2007", "test", root=voc_root, image_size=37)
    for i in range(2):
        ann = ds.annotation(i)
        H, W = ann["size"]
        full = torch.zeros(H, W)
        for (x0, y0, x1, y1), c in zip(ann["boxes"].tolist(), ann["labels"].tolist()):
            if c == int(ds.labels[i]):
                full[y0:y1, x0:x1] = 1  # TorchRay's voc_as_mask, 0-based
        ref = F.interpolate(full[None, None], size=(37, 37), mode="nearest-exact")[0, 0] > 0
        assert torch.equal(ds[i][2], ref) and torch.equal(ds.mask(i), ref)


def test_voc_thin_box_and_full_box(voc_root):
    ds = create_dataset("voc2007", "train", root=voc_root, image_size=32)
    assert [VOC_CLASSES[c] for c in ds.labels.tolist()] == ["aeroplane", "bottle"]
    assert ds[0][2].all()
    # 64 -> 32: output centres fall on odd source columns; the box covers column 10 only,
    # so the output column holding its centre (10.5 / 2 -> 5) is kept. Rows 20..39 -> 10..19.
    assert torch.equal(ds[1][2], rect(32, (10, 20), (5, 6)))
    batch = ds.get_batch([0, 1])
    assert batch.masks.shape == (2, 32, 32) and batch.labels.tolist() == [0, 4]


def test_voc_include_difficult_and_annotation(voc_root):
    ds = create_dataset("voc2007", "test", root=voc_root, image_size=50, include_difficult=True)
    names = [VOC_CLASSES[c] for c in ds.labels.tolist()]
    assert names == ["cat", "dog", "person", "aeroplane", "bottle"]
    assert ds.difficult.tolist() == [True, False, False, False, False]
    assert ds.info.extra["include_difficult"] is True
    assert torch.equal(ds[0][2], rect(50, (9, 40), (34, 45)))  # x 69..89 -> cols 34..44
    ann = ds.annotation(0)
    assert ann["image_id"] == "000001" and ann["size"] == (50, 100)
    assert ann["labels"].tolist() == [VOC_CLASSES.index(n) for n in ("dog", "person", "dog", "cat", "person")]
    assert ann["boxes"][0].tolist() == [11, 5, 31, 20]
    assert ann["difficult"].tolist() == [False, True, False, True, False]
    # exact: integer boxes times 50/100 = 0.5 and 50/50 = 1
    assert torch.equal(ann["boxes_resized"][0], torch.tensor([5.5, 5.0, 15.5, 20.0]))


def test_voc_root_variants_and_errors(voc_root, tmp_path):
    voc_dir = voc_root / "VOCdevkit" / "VOC2007"
    assert len(create_dataset("voc2007", "test", root=voc_dir, image_size=32)) == 4
    with pytest.raises(UserError) as e:
        create_dataset("voc2007", "test", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt") in msg
    assert "VOCtest_06-Nov-2007.tar" in msg
    with pytest.raises(UserError, match="val.txt"):
        create_dataset("voc2007", "val", root=voc_root)
    with pytest.raises(UserError, match="not downloaded"):
        create_dataset("voc2007", "test", root=voc_root, download=True)
    with pytest.raises(UserError, match="unknown split"):
        create_dataset("voc2007", "extra", root=voc_root)


def test_voc_bad_annotation(tmp_path):
    d = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (d / sub).mkdir(parents=True)
    (d / "ImageSets/Main/test.txt").write_text("a\n")
    (d / "Annotations/a.xml").write_text(voc_xml("a", 10, 10, [("unicorn", (1, 1, 5, 5), False)]))
    with pytest.raises(UserError, match="unicorn"):
        create_dataset("voc2007", "test", root=tmp_path)
    (d / "ImageSets/Main/test.txt").write_text("b\n")
    with pytest.raises(UserError, match="b.xml is missing"):
        create_dataset("voc2007", "test", root=tmp_path)


def test_boxes_to_mask_clips_and_ignores_outside_boxes():
    boxes = torch.tensor([[-5, -5, 3, 2], [20, 20, 30, 30]])
    assert torch.equal(boxes_to_mask(boxes, (10, 10), 10), rect(10, (0, 2), (0, 3)))


def test_registry_lists_real_datasets():
    assert {"cifar10", "cifar100", "svhn", "imagefolder", "imagenette", "voc2007"} <= set(list_datasets())

"""CIFAR-10 and CIFAR-100 from the "python version" pickles (Krizhevsky 2009).

Files (as distributed at https://www.cs.toronto.edu/~kriz/cifar.html and as torchvision's
``CIFAR10``/``CIFAR100`` unpack them)::

    ROOT/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    ROOT/cifar-100-python/train, test, meta

Each batch is a Python 2 pickle of a dict: ``data`` [N, 3072] uint8 (row-major 32x32 planes
R, G, B), ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) a list of ints. The meta file
holds ``label_names`` / ``fine_label_names`` in label order. Keys come back as ``str`` or
``bytes`` depending on how a file was written; both are accepted.

Images are held in memory as uint8 [N, 3, 32, 32]; ``image_size`` other than 32 resizes
bilinearly on access (see :class:`~lico_bench.data.common.ResizedTensorDataset`). No masks.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import UserError
from ..schemas import integer, list_of
from .base import DatasetInfo, TensorImageDataset
from .common import (base_root, check_image_size, check_options, check_split, holdout, in_memory,
                     torchvision_download, where)
from .registry import register_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)

# Per-channel mean and (population) std of the training images in [0, 1], the constants used
# by FixMatch (kekmodel/FixMatch-pytorch, dataset/cifar.py) and most CIFAR code since.
# (The other common CIFAR-10 std, (0.2023, 0.1994, 0.2010), is a per-image std; not used.)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)

SPECS = {
    "cifar10": dict(
        title="CIFAR-10", folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
        meta="batches.meta", names_key="label_names", labels_key="labels",
        classes=CIFAR10_CLASSES, mean=CIFAR10_MEAN, std=CIFAR10_STD,
        torchvision="CIFAR10", url="https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": dict(
        title="CIFAR-100", folder="cifar-100-python", train=("train",), test=("test",),
        meta="meta", names_key="fine_label_names", labels_key="fine_labels",
        classes=CIFAR100_CLASSES, mean=CIFAR100_MEAN, std=CIFAR100_STD,
        torchvision="CIFAR100", url="https://www.cs.toronto.edu/~kriz/cifar.html"),
}
SPLITS = ("train", "val", "test")


def _text(x) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


class _Refused(pickle.UnpicklingError):
    """The file names something a CIFAR file never holds (and that could run code)."""


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles (protocol 2) rebuild ``bytes`` with it: only
    the latin-1 round trip they use, nothing else that a codec name could trigger."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()``, as Python 3 pickles (protocol 2) store an empty ``bytes``."""
    if args:
        raise _Refused("bytes(...) with arguments")
    return b""


def _ndarray_reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct``, for plain ``ndarray`` only (no subclass runs)."""
    if subtype is not np.ndarray:
        raise _Refused("a subclass of numpy arrays")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _ndarray_frombuffer(buf, dtype, shape, order):
    """numpy's ``_frombuffer`` (arrays in protocol-5 pickles): bytes viewed as numbers."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise _Refused("an array that is not numeric")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype, data=None):
    """numpy's ``scalar`` (a numpy int or float in a re-pickled file), numbers only."""
    if isinstance(data, str):  # a Python 2 pickle read with encoding="latin1"
        data = data.encode("latin1")
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise _Refused("a numpy scalar that is not a number")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


# What the real files (and torchvision's or numpy's re-pickles of them) reference: numpy
# arrays, dtypes and scalars, and the codec Python 3 uses for bytes. Nothing else can be
# named, so nothing else can be called while a file is read.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _ndarray_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _ndarray_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _ndarray_frombuffer,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _CifarUnpickler(pickle.Unpickler):
    """A restricted unpickler: the CIFAR format (dicts, lists, str/bytes, ints and numpy
    arrays) stays readable; any other class or function a file names is refused, so a
    payload (an object whose unpickling runs code) never runs."""

    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise _Refused("a persistent reference")


def unpickle(path: Path) -> dict:
    """Load one CIFAR pickle; keys as ``str`` whatever way the file was written.

    ``encoding="latin1"`` is what Python 2 pickles of numpy arrays need (it is what
    torchvision uses); Python 3 pickles with ``bytes`` keys load the same way. Files come
    from outside, so they are read with a restricted unpickler (:class:`_CifarUnpickler`):
    a file that names anything but numpy arrays is refused, unread.
    """
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="latin1").load()
    except _Refused as e:
        raise UserError(f"{path} is not a CIFAR file, or an unsafe one: it names {e}, which "
                        "the CIFAR files never hold and which could run code, so it was not "
                        "loaded; fetch the python version of the dataset again.") from None
    except OSError:
        raise
    except Exception as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {e}; the file looks corrupt, "
                        f"fetch it again.") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a CIFAR pickle (holds a {type(d).__name__}, not a dict).")
    return {_text(k): v for k, v in d.items()}


def _find(spec: dict, base: Path, files) -> Optional[Path]:
    """The folder holding all ``files``: ``base/<folder>`` (torchvision) or ``base`` itself."""
    for d in (base / spec["folder"], base):
        if all((d / f).is_file() for f in files):
            return d
    return None


def _class_names(spec: dict, folder: Path) -> tuple:
    """Class names in label order from the meta file, checked against the known list."""
    path = folder / spec["meta"]
    if not path.is_file():  # the names are fixed; the meta file is a convenience
        return spec["classes"]
    meta = unpickle(path)
    if spec["names_key"] not in meta:
        raise UserError(f"{path} has no {spec['names_key']!r} entry; the file looks corrupt.")
    names = tuple(_text(n) for n in meta[spec["names_key"]])
    if names != spec["classes"]:
        raise UserError(f"{path} lists classes {list(names)[:4]}…, not the {spec['title']} "
                        f"classes in their standard order; the file is not {spec['title']}'s.")
    return names


def _read_batch(spec: dict, path: Path):
    """One batch file -> images [n, 3, 32, 32] uint8, labels [n] int64."""
    d = unpickle(path)
    if "data" not in d or spec["labels_key"] not in d:
        raise UserError(f"{path} lacks 'data' or {spec['labels_key']!r}; is it a "
                        f"{spec['title']} batch?")
    raw = d[spec["labels_key"]]
    why = None if isinstance(raw, np.ndarray) and raw.dtype.kind in "iu" else \
        list_of(integer()).problem(raw, spec["labels_key"])
    if why:  # a list of ints in every real batch; text or floats were a traceback or truncated
        raise UserError(f"{path}: {why}; the file looks corrupt, download it again.")
    data = np.asarray(d["data"])
    labels = np.asarray(d[spec["labels_key"]], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or len(data) != len(labels):
        raise UserError(f"{path}: expected data [N, 3072] uint8 and N labels, got data "
                        f"{list(data.shape)} {data.dtype} and {len(labels)} labels.")
    n_cls = len(spec["classes"])
    if len(labels) and (labels.min() < 0 or labels.max() >= n_cls):
        raise UserError(f"{path}: labels outside 0..{n_cls - 1}.")
    # Rows are the R, G and B planes of a 32x32 image, each row-major: a plain reshape.
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))
    return images, torch.from_numpy(labels)


def cifar_info(name: str, image_size: int = 32) -> DatasetInfo:
    spec = SPECS[name]
    return DatasetInfo(name, spec["classes"], spec["mean"], spec["std"], image_size,
                       has_masks=False)


def load_cifar(name: str, split: str = "train", root=None, image_size: Optional[int] = None,
               seed: int = 0, download: bool = False,
               val_size: Optional[int] = None) -> TensorImageDataset:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels).

    Args:
        split: ``train`` (50k, or 50k - ``val_size`` when ``val_size`` is given), ``val``
            (a seeded hold-out of ``val_size`` training images, default 5000) or ``test`` (10k).
        root: folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (or the batch
            files themselves); None: ``$LICO_BENCH_DATA`` or ``./data``.
        image_size: side of the items, default 32; other sizes resize bilinearly on access.
        seed: draws the train/val hold-out permutation.
        download: fetch the archive into ``root`` with torchvision first (if not there).

    Returns a dataset of items ``(image [3, S, S] float32 normalised, label int, None)``
    with ``.images`` [N, 3, 32, 32] uint8 and ``.labels`` [N] int64.
    """
    spec = SPECS[name]
    check_split(name, split, SPLITS)
    size = check_image_size(name, image_size, 32)
    base = base_root(root)
    files = spec["train"] if split in ("train", "val") else spec["test"]
    folder = _find(spec, base, files)
    if folder is None and download:
        import torchvision.datasets as tvd

        cls = getattr(tvd, spec["torchvision"])
        torchvision_download(spec["title"], lambda: cls(str(base), train=True, download=True))
        folder = _find(spec, base, files)
    if folder is None:
        expected = ", ".join(str(base / spec["folder"] / f) for f in files)
        raise UserError(f"{spec['title']} not found under {where(base)}: expected {expected}; pass "
                        f"--download (download=True in Python) to fetch it with torchvision, or get the python "
                        f"version from {spec['url']} and extract it under {base}.")

    class_names = _class_names(spec, folder)
    parts = [_read_batch(spec, folder / f) for f in files]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    if len(labels) == 0:   # a split of no images was a matplotlib traceback further on
        raise UserError(f"{', '.join(str(folder / f) for f in files)} hold no images; the files "
                        f"look corrupt, get {spec['title']} again.")
    extra = {}
    if split != "test":
        idx, extra = holdout(len(labels), split, val_size, seed)
        if idx is not None:
            images, labels = images[idx], labels[idx]
    spec_info = cifar_info(name, size)
    info = DatasetInfo(spec_info.name, class_names, spec_info.mean, spec_info.std, size,
                       has_masks=False, extra=extra)
    return in_memory(info, split, images, labels)


def _factory(name: str):
    def factory(split="train", root=None, image_size=None, seed=0, download=False, **options):
        check_options(name, options, ("val_size",))
        return load_cifar(name, split, root=root, image_size=image_size, seed=seed,
                          download=download, **options)

    factory.__doc__ = f"``{name}``: see :func:`lico_bench.data.cifar.load_cifar`."
    return factory


register_dataset("cifar10", _factory("cifar10"))
register_dataset("cifar100", _factory("cifar100"))

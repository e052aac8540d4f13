"""Image folders (torchvision's ``ImageFolder`` layout) and Imagenette.

Layout: ``ROOT/<split>/<class>/**/<image>`` with the extensions torchvision accepts (.jpg,
.jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp, any case). Labels index the sorted class
folder names, as in ``ImageFolder``, with one difference: the class list is the union of the
class folders of all standard split folders present (train, val, test) and the requested
one, so a split that lacks a class does not shift the labels of the others. Folders whose
name starts with "." are skipped.

Images are read from disk with PIL on each access (not held in memory) and given the
deterministic ImageNet evaluation transform: resize the shorter side to
``int(S * 256 / 224)`` (bilinear, antialiased), centre-crop ``S`` x ``S`` (default S = 224),
normalise with the ImageNet mean/std. Training augmentation (random resized crops, flips)
is the trainer's job, applied to these tensors. No masks.

Imagenette (https://github.com/fastai/imagenette, ``imagenette2``, ``-320`` or ``-160``) is
this layout with ImageNet wnid folder names; ``imagenette`` maps them to readable names.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import UserError
from ..io import check_regular_file
from .base import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, LicoDataset
from .common import base_root, candidates, check_image_size, check_options, where
from .registry import register_dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
STANDARD_SPLITS = ("train", "val", "test")

# Imagenette's ten ImageNet classes: wnid -> readable name (sorted wnid = label order).
IMAGENETTE_WNIDS = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}
IMAGENETTE_FOLDERS = ("imagenette2", "imagenette2-320", "imagenette2-160")
IMAGENETTE_URL = "https://github.com/fastai/imagenette"


def is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def class_folders(directory: Path) -> List[str]:
    """Names of the visible sub-folders of ``directory``, sorted; [] if it does not exist."""
    if not directory.is_dir():
        return []
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def find_images(split_dir: Path, classes: Sequence[str]) -> List[Tuple[str, int]]:
    """(path, label) for every image under ``split_dir/<class>``, in torchvision's order.

    Directory symlinks inside a class folder are followed (data kept elsewhere), except one
    that leads back into ``split_dir`` or to a folder above it (``ln -s .. cls0/loop``: it
    would loop, and label another class's images as this one) and any folder reached twice:
    both are a one-line UserError naming the link, never a silently different image list."""
    top = os.path.realpath(split_dir)
    samples = []
    for label, cls in enumerate(classes):
        d = split_dir / cls
        if not d.is_dir():
            continue
        seen = set()
        walked = []
        for sub, dirs, fnames in os.walk(d, followlinks=True):
            real = os.path.realpath(sub)
            if real in seen:
                raise UserError(f"image folder {sub} is reached twice through directory "
                                f"symlinks (it is {real}); remove the extra link")
            seen.add(real)
            for name in dirs:
                link = os.path.join(sub, name)
                if not os.path.islink(link):
                    continue
                target = os.path.realpath(link)
                if target == top or target.startswith(top + os.sep) or \
                        top.startswith(target.rstrip(os.sep) + os.sep):
                    raise UserError(f"directory symlink {link} points back into the image "
                                    f"tree or above it ({target}), which would loop or mix "
                                    f"classes; remove it or point it outside {split_dir}")
            walked.append((sub, fnames))
        for sub, fnames in sorted(walked):
            samples += [(os.path.join(sub, f), label) for f in sorted(fnames) if is_image(f)]
    return samples


# What an image file may be. Formats: the ones IMG_EXTENSIONS name (PIL's PPM plugin reads
# .pgm too); PIL would otherwise try every plugin it has, some of which hand the file to an
# outside program (EPS -> Ghostscript). Pixels: PIL's own decompression-bomb threshold
# (Image.MAX_IMAGE_PIXELS, 89.5 Mpx, about 1/4 GiB as RGB), an error here instead of a
# warning. Bytes: 256 MiB, far above any photo in these datasets (ImageNet's largest JPEG
# is ~15 MB).
IMAGE_FORMATS = ("JPEG", "PNG", "PPM", "BMP", "TIFF", "WEBP")
MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_BYTES = 256 * 2 ** 20


@contextmanager
def open_image(path: str | os.PathLike) -> Iterator["PIL.Image.Image"]:  # noqa: F821
    """Open an image file from outside, lazily (header read, pixels not decoded), for reading
    only what it is: a regular file (a FIFO, device or socket - e.g. a symlink to
    /dev/zero - would block or never end) of at most :data:`MAX_IMAGE_BYTES`, in one of
    :data:`IMAGE_FORMATS`, of at most :data:`MAX_IMAGE_PIXELS`. Anything else, and an
    unreadable file, is a one-line UserError naming the file."""
    import warnings

    from PIL import Image

    try:
        # a regular file (a FIFO would block, /dev/zero never end) within the byte bound
        check_regular_file(path, f"image {path}", MAX_IMAGE_BYTES, too_big="shrink or remove it")
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read image {path}: {e.strerror or type(e).__name__}") from None
    with f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(f, formats=IMAGE_FORMATS)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise UserError(f"image {path} has more than {MAX_IMAGE_PIXELS} pixels; shrink or "
                            f"remove it") from None
        except Image.UnidentifiedImageError:
            raise UserError(f"cannot read image {path}: not a {', '.join(IMAGE_FORMATS[:-1])} "
                            f"or {IMAGE_FORMATS[-1]} image") from None
        except Exception as e:
            raise UserError(f"cannot read image {path}: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:120]}") from None
        with im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise UserError(f"image {path} has {im.width} x {im.height} pixels, more than "
                                f"{MAX_IMAGE_PIXELS}; shrink or remove it")
            yield im


def load_rgb(path: str):
    """A PIL RGB image (decoded), read through :func:`open_image`; unreadable or refused
    files -> UserError naming the file."""
    with open_image(path) as im:
        try:
            return im.convert("RGB")
        except Exception as e:
            raise UserError(f"cannot read image {path}: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:120]}") from None


def to_normalised(img_u8: torch.Tensor, mean, std) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, H, W] float32, ``(x / 255 - mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (img_u8.float().div_(255.0) - m) / s


def eval_transform(img, size: int) -> torch.Tensor:
    """PIL image -> [3, size, size] uint8: shorter side to int(size*256/224), centre crop."""
    import torchvision.transforms.functional as TF

    img = TF.resize(img, int(size * 256 / 224), interpolation=TF.InterpolationMode.BILINEAR,
                    antialias=True)
    img = TF.center_crop(img, [size, size])
    return TF.pil_to_tensor(img)


class ImageFolderDataset(LicoDataset):
    """Images under ``split_dir/<class folder>/``, loaded lazily.

    Items: ``(image [3, S, S] float32 normalised, label int, None)``.
    Attributes: ``paths`` (list of str), ``labels`` [N] int64, ``folders`` (the class folder
    names in label order; ``info.class_names`` are the display names).
    """

    def __init__(self, info: DatasetInfo, split: str, split_dir: Path, folders: Sequence[str]):
        self.info, self.split, self.split_dir = info, split, split_dir
        self.folders = tuple(folders)
        samples = find_images(split_dir, self.folders)
        if not samples:
            exts = ", ".join(IMG_EXTENSIONS)
            raise UserError(f"no images found under {split_dir}: expected "
                            f"{split_dir}/<class>/<image> with one of {exts}.")
        self.paths = [p for p, _ in samples]
        self.labels = torch.tensor([lab for _, lab in samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = eval_transform(load_rgb(self.paths[i]), self.info.image_size)
        return to_normalised(img, self.info.mean, self.info.std), int(self.labels[i]), None


def _split_dir(name: str, base: Path, split: str, search: Sequence[Path], layout: str,
               hint: str) -> Tuple[Path, Path]:
    """The first ``d`` in ``search`` with a ``d/split`` folder -> (d, d/split), or UserError."""
    for d in search:
        if (d / split).is_dir():
            return d, d / split
    found = sorted({s for d in search for s in class_folders(d)})
    have = f" (found folders: {', '.join(found)})" if found else ""
    raise UserError(f"{name} split {split!r} not found under {where(base)}: expected {layout}"
                    f"{have}; {hint}")


def _all_classes(d: Path, split: str) -> List[str]:
    return sorted({c for s in set(STANDARD_SPLITS) | {split} for c in class_folders(d / s)})


CLASS_NAME_FILES = ("classnames.txt", "LOC_synset_mapping.txt")


def read_class_names(d: Path, folders: Sequence[str]) -> Tuple[str, ...]:
    """Display names of ``folders`` from the first of :data:`CLASS_NAME_FILES` in ``d``
    (``<folder> <name>[, synonym ...]`` per line), or the folder names when there is none."""
    for fname in CLASS_NAME_FILES:
        path = d / fname
        if path.is_file():
            break
    else:
        return tuple(folders)
    names = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2:
            names[parts[0]] = parts[1].split(",")[0].strip()
    missing = [f for f in folders if not names.get(f)]
    if missing:
        raise UserError(f"{path} names no class for folder(s) {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}; add lines '<folder> <name>' "
                        "or remove the file to use the folder names.")
    return tuple(names[f] for f in folders)


def load_imagefolder(split: str = "train", root=None, image_size: Optional[int] = None,
                     download: bool = False) -> ImageFolderDataset:
    """``ROOT/<split>/<class>/*``; labels index the sorted folder names.

    Class names (LICO's prompts read them): the folder names, unless ``ROOT`` holds one of
    :data:`CLASS_NAME_FILES`, lines ``<folder> <name>[, synonym, ...]`` (the format of
    ImageNet's ``LOC_synset_mapping.txt``: ``n01440764 tench, Tinca tinca``), in which case
    each class is named by the text after its folder name up to the first comma. Without
    such a file, ImageNet's wnid folders (``n01440764``) would be LICO's class names.

    ``root`` None: ``$LICO_BENCH_DATA`` or ``./data``. ``image_size`` default 224.
    Mean/std: ImageNet's.
    """
    base = base_root(root)
    if download:
        raise UserError("imagefolder cannot be downloaded: it reads your own folder "
                        f"{base}/<split>/<class>/<image>; drop download=True.")
    size = check_image_size("imagefolder", image_size, 224)
    d, split_dir = _split_dir("imagefolder", base, split, (base,), f"{base}/{split}/<class>/<image>",
                              "pass root= the folder that holds the split folders.")
    folders = _all_classes(d, split)
    if not folders:
        raise UserError(f"no class folders in {split_dir}: expected {split_dir}/<class>/<image>.")
    info = DatasetInfo("imagefolder", read_class_names(d, folders), IMAGENET_MEAN, IMAGENET_STD,
                       size, has_masks=False)
    return ImageFolderDataset(info, split, split_dir, folders)


def load_imagenette(split: str = "train", root=None, image_size: Optional[int] = None,
                    download: bool = False) -> ImageFolderDataset:
    """Imagenette 2 (``train``, ``val``): ten ImageNet classes, readable class names.

    ``root``: the folder with ``train/`` and ``val/``, or one holding ``imagenette2``
    (``-320``, ``-160``); None: ``$LICO_BENCH_DATA`` or ``./data``. Labels follow the sorted
    wnids, i.e. the order of :data:`IMAGENETTE_WNIDS`. ``image_size`` default 224.
    """
    base = base_root(root)
    how = (f"download imagenette2 (or -320/-160) from {IMAGENETTE_URL} and extract it "
           f"under {base}.")
    if download:
        raise UserError(f"imagenette is not downloaded by lico-bench; {how}")
    size = check_image_size("imagenette", image_size, 224)
    d, split_dir = _split_dir("imagenette", base, split, candidates(base, IMAGENETTE_FOLDERS),
                              f"{base}/imagenette2/{split}/n01440764/…", how)
    folders = _all_classes(d, split)
    if set(folders) != set(IMAGENETTE_WNIDS):
        odd = sorted(set(folders) ^ set(IMAGENETTE_WNIDS))
        raise UserError(f"{d} does not hold exactly the ten Imagenette class folders "
                        f"({', '.join(IMAGENETTE_WNIDS)}); these differ: {', '.join(odd)}. "
                        f"Use dataset 'imagefolder' for other class sets.")
    names = tuple(IMAGENETTE_WNIDS[w] for w in folders)
    info = DatasetInfo("imagenette", names, IMAGENET_MEAN, IMAGENET_STD, size, has_masks=False)
    return ImageFolderDataset(info, split, split_dir, folders)


@register_dataset("imagefolder")
def _imagefolder(split="train", root=None, image_size=None, seed=0, download=False, **options):
    """``imagefolder``: see :class:`ImageFolderDataset`."""
    check_options("imagefolder", options, ())
    return load_imagefolder(split, root=root, image_size=image_size, download=download)


@register_dataset("imagenette")
def _imagenette(split="train", root=None, image_size=None, seed=0, download=False, **options):
    """``imagenette``: see :func:`load_imagenette`."""
    check_options("imagenette", options, ())
    return load_imagenette(split, root=root, image_size=image_size, download=download)

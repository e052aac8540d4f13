"""PASCAL VOC 2007 detection boxes as pointing-game masks.

Files (VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar, as torchvision's
``VOCDetection`` keeps them)::

    ROOT/VOCdevkit/VOC2007/Annotations/<id>.xml
    ROOT/VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    ROOT/VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt

``ROOT`` may also hold ``VOC2007/`` directly or be the ``VOC2007`` folder itself.

Items follow TorchRay's pointing game (``torchray/benchmark/pointing_game.py``): one item per
(image, class present in it) pair, classes in label order within an image. The item's label
is that class and its mask the union of all boxes of that class (difficult ones included),
so several instances of a class make one mask. TorchRay skips a pair when every box of the
class is marked difficult; so does this dataset by default (``include_difficult=False``);
with ``include_difficult=True`` such pairs are kept and flagged in ``difficult``.

Geometry: the image is resized to ``S`` x ``S`` (default 224, bilinear, antialiased), so the
aspect ratio is NOT kept. The mask gets the same map with nearest-neighbour sampling at
pixel centres: output pixel (i, j) is inside iff the source pixel under its centre,
``(floor((i + .5) H / S), floor((j + .5) W / S))``, lies in a box. VOC boxes are 1-based
inclusive pixel coordinates: box (xmin, ymin, xmax, ymax) covers the 0-based pixels
``xmin-1 .. xmax-1`` and ``ymin-1 .. ymax-1`` (as TorchRay's ``voc_as_mask``). A box too thin
to contain any output pixel centre along an axis keeps the one output row/column holding
its centre, so no present class gets an empty mask.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from ..errors import UserError
from ..io import read_bounded_text
from .base import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, LicoDataset
from .common import base_root, check_image_size, check_options, check_split, where
from .folder import load_rgb, open_image, to_normalised
from .registry import register_dataset

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
SPLITS = ("train", "val", "trainval", "test")
URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"


@dataclass(frozen=True)
class Annotation:
    """One image's objects. boxes: [K, 4] int64 (x0, y0, x1, y1), 0-based, end-exclusive,
    in original pixels; labels: [K] int64; difficult: [K] bool; size: (H, W) or None."""

    image_id: str
    size: Optional[Tuple[int, int]]
    labels: torch.Tensor
    boxes: torch.Tensor
    difficult: torch.Tensor


_MAX_COORD = 2 ** 31 - 1   # pixel coordinates and sizes of a VOC annotation


def _int(node, tag: str, path: Path, default=None) -> int:
    text = node.findtext(tag)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise UserError(f"{path}: missing <{tag}>.")
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{path}: <{tag}> is {text!r}, not a number.") from None
    if not abs(v) <= _MAX_COORD:  # inf, 1e400 (= inf), nan: an OverflowError further on
        raise UserError(f"{path}: <{tag}> is {text.strip()[:40]!r}, not a pixel coordinate "
                        f"(a finite number of at most {_MAX_COORD}).")
    return int(round(v))


def parse_annotation(path: Path) -> Annotation:
    """Read one VOC XML file (boxes converted to 0-based end-exclusive pixel edges)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise UserError(f"cannot read VOC annotation {path}: {e}") from e
    size = None
    node = root.find("size")
    if node is not None and node.findtext("width") and node.findtext("height"):
        size = (_int(node, "height", path), _int(node, "width", path))
        if size[0] <= 0 or size[1] <= 0:
            size = None  # a few VOC-style files write 0; the image header is then the truth
    labels, boxes, difficult = [], [], []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise UserError(f"{path}: unknown VOC class {name!r}; expected one of "
                            f"{', '.join(VOC_CLASSES)}.")
        bb = obj.find("bndbox")
        if bb is None:
            raise UserError(f"{path}: object {name!r} has no <bndbox>.")
        xmin, ymin = _int(bb, "xmin", path), _int(bb, "ymin", path)
        xmax, ymax = _int(bb, "xmax", path), _int(bb, "ymax", path)
        labels.append(VOC_CLASSES.index(name))
        # 1-based inclusive [xmin, xmax] -> 0-based half-open [xmin - 1, xmax).
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        difficult.append(bool(_int(obj, "difficult", path, default=0)))
    return Annotation(path.stem, size, torch.tensor(labels, dtype=torch.long),
                      torch.tensor(boxes, dtype=torch.long).view(-1, 4),
                      torch.tensor(difficult, dtype=torch.bool))


def _axis_in(lo: int, hi: int, src: int, out: int) -> torch.Tensor:
    """[out] bool: output pixels whose centre falls in source pixels ``lo .. hi-1``."""
    centres = (torch.arange(out, dtype=torch.float64) + 0.5) * (src / out)
    inside = (centres >= lo) & (centres < hi)
    if not inside.any() and hi > lo:  # thin box: keep the output pixel holding its centre
        j = min(max(int((lo + hi) / 2 * out / src), 0), out - 1)
        inside[j] = True
    return inside


def boxes_to_mask(boxes: torch.Tensor, src_hw: Tuple[int, int], size: int) -> torch.Tensor:
    """Union of boxes as a mask after resizing the image to ``size`` x ``size``.

    boxes: [K, 4] int64 (x0, y0, x1, y1), 0-based end-exclusive, in a source image of
    ``src_hw = (H, W)`` pixels. Returns [size, size] bool (see the module docstring).
    """
    H, W = src_hw
    mask = torch.zeros(size, size, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        x0, x1 = max(x0, 0), min(x1, W)
        y0, y1 = max(y0, 0), min(y1, H)
        if x1 <= x0 or y1 <= y0:
            continue  # a box outside the image adds nothing
        mask |= _axis_in(y0, y1, H, size)[:, None] & _axis_in(x0, x1, W, size)[None, :]
    return mask


def find_voc(base: Path) -> Optional[Path]:
    """The VOC2007 folder: base/VOCdevkit/VOC2007, base/VOC2007, or base itself."""
    for d in (base / "VOCdevkit" / "VOC2007", base / "VOC2007", base):
        if (d / "Annotations").is_dir() and (d / "JPEGImages").is_dir():
            return d
    return None


class VOCPointingDataset(LicoDataset):
    """VOC 2007 (image, present class) pairs with box masks; images loaded lazily.

    Items: ``(image [3, S, S] float32 normalised, label int, mask [S, S] bool)``.

    Attributes (one entry per item, N items):
        labels: [N] int64, the item's class.
        difficult: [N] bool, every box of the item's class in its image is difficult
            (always False unless ``include_difficult=True``).
        labels_all: [N, 20] bool, all classes present in the item's image (multi-label
            target; difficult objects count).
        image_ids: list of N str, the VOC image id (file stem) of each item.
        image_index: [N] int64, index into ``annotations`` (one per image of the split).
        annotations: list of :class:`Annotation`, one per image of the split, in the split
            file's order; :meth:`annotation` returns the item's one with resized boxes.
    """

    def __init__(self, voc_dir: Path, split: str, image_size: int = 224,
                 include_difficult: bool = False):
        self.voc_dir, self.split = voc_dir, split
        self.include_difficult = bool(include_difficult)
        self.info = DatasetInfo("voc2007", VOC_CLASSES, IMAGENET_MEAN, IMAGENET_STD, image_size,
                                has_masks=True, extra={"include_difficult": self.include_difficult})
        list_file = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        try:  # bounded: a regular file (not a FIFO), UTF-8
            text = read_bounded_text(list_file, f"VOC list {list_file}")
        except UnicodeDecodeError as e:
            raise UserError(f"VOC list {list_file} is not UTF-8 text ({e.reason} at byte "
                            f"{e.start}); extract the VOC 2007 archive again.") from None
        ids = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
        if not ids:
            raise UserError(f"{list_file} lists no images.")
        odd = next((i for i in ids if "/" in i or "\\" in i or i.startswith(".")), None)
        if odd is not None:  # a path, not a file stem: it would read files outside the tree
            raise UserError(f"{list_file} lists {odd[:60]!r}, not an image id (a file stem such "
                            "as 000001); extract the VOC 2007 archive again.")
        self.annotations: List[Annotation] = []
        for image_id in ids:
            path = voc_dir / "Annotations" / f"{image_id}.xml"
            if not path.is_file():
                raise UserError(f"VOC annotation {path} is missing (listed in {list_file}); "
                                f"extract the matching VOC 2007 archive (trainval or test).")
            self.annotations.append(parse_annotation(path))

        image_index, labels, difficult, present = [], [], [], []
        for k, ann in enumerate(self.annotations):
            classes = torch.zeros(len(VOC_CLASSES), dtype=torch.bool)
            classes[ann.labels] = True
            for c in classes.nonzero().flatten().tolist():
                all_difficult = bool(ann.difficult[ann.labels == c].all())
                if all_difficult and not self.include_difficult:
                    continue  # TorchRay skips these pairs
                image_index.append(k)
                labels.append(c)
                difficult.append(all_difficult)
                present.append(classes)
        if not labels:
            raise UserError(f"the images in {list_file} have no (non-difficult) objects.")
        self.image_index = torch.tensor(image_index, dtype=torch.long)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.difficult = torch.tensor(difficult, dtype=torch.bool)
        self.labels_all = torch.stack(present)
        self.image_ids = [self.annotations[k].image_id for k in image_index]
        self._cache: Tuple[int, Optional[torch.Tensor], Optional[Tuple[int, int]]] = (-1, None, None)

    def __len__(self) -> int:
        return len(self.labels)

    def _image(self, k: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Image ``k`` resized: ([3, S, S] uint8, original (H, W)); the last one is cached
        because the items of one image are consecutive."""
        if self._cache[0] != k:
            import torchvision.transforms.functional as TF

            S = self.info.image_size
            img = load_rgb(str(self.voc_dir / "JPEGImages" / f"{self.annotations[k].image_id}.jpg"))
            hw = (img.height, img.width)
            img = TF.resize(img, [S, S], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            self._cache = (k, TF.pil_to_tensor(img), hw)
        return self._cache[1], self._cache[2]

    def _mask(self, i: int, hw: Tuple[int, int]) -> torch.Tensor:
        ann = self.annotations[int(self.image_index[i])]
        return boxes_to_mask(ann.boxes[ann.labels == self.labels[i]], hw, self.info.image_size)

    def __getitem__(self, i: int):
        img, hw = self._image(int(self.image_index[i]))
        return (to_normalised(img, self.info.mean, self.info.std), int(self.labels[i]),
                self._mask(i, hw))

    def mask(self, i: int) -> torch.Tensor:
        """Item ``i``'s mask [S, S] bool without decoding the image (size from the XML, or
        from the image header when the XML has none)."""
        return self._mask(i, self._size(int(self.image_index[i])))

    def _size(self, k: int) -> Tuple[int, int]:
        ann = self.annotations[k]
        if ann.size is not None:
            return ann.size
        with open_image(self.voc_dir / "JPEGImages" / f"{ann.image_id}.jpg") as im:
            return (im.height, im.width)

    def annotation(self, i: int) -> dict:
        """The full target of item ``i``'s image: ``image_id``, ``size`` (H, W) original,
        ``labels`` [K] int64, ``boxes`` [K, 4] int64 (x0, y0, x1, y1; 0-based end-exclusive,
        original pixels), ``boxes_resized`` [K, 4] float32 (same, in the S x S image),
        ``difficult`` [K] bool."""
        k = int(self.image_index[i])
        ann = self.annotations[k]
        H, W = self._size(k)
        S = self.info.image_size
        scale = torch.tensor([S / W, S / H, S / W, S / H], dtype=torch.float32)
        return {"image_id": ann.image_id, "size": (H, W), "labels": ann.labels.clone(),
                "boxes": ann.boxes.clone(), "boxes_resized": ann.boxes.float() * scale,
                "difficult": ann.difficult.clone()}


def load_voc2007(split: str = "test", root=None, image_size: Optional[int] = None,
                 download: bool = False, include_difficult: bool = False) -> VOCPointingDataset:
    """PASCAL VOC 2007 pointing-game pairs; see :class:`VOCPointingDataset`.

    ``root`` None: ``$LICO_BENCH_DATA`` or ``./data``. ``image_size`` default 224.
    """
    base = base_root(root)
    get = (f"get VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar from {URL} and "
           f"extract them under {base} (giving {base}/VOCdevkit/VOC2007)")
    if download:
        raise UserError(f"voc2007 is not downloaded by lico-bench; {get}.")
    check_split("voc2007", split, SPLITS)
    size = check_image_size("voc2007", image_size, 224)
    voc = find_voc(base)
    list_file = None if voc is None else voc / "ImageSets" / "Main" / f"{split}.txt"
    if voc is None or not list_file.is_file():
        d = voc or base / "VOCdevkit" / "VOC2007"
        raise UserError(f"PASCAL VOC 2007 {split} not found under {where(base)}: expected "
                        f"{d}/ImageSets/Main/{split}.txt, {d}/Annotations/*.xml and "
                        f"{d}/JPEGImages/*.jpg; {get}.")
    return VOCPointingDataset(voc, split, size, include_difficult=include_difficult)


@register_dataset("voc2007")
def _voc2007(split="test", root=None, image_size=None, seed=0, download=False, **options):
    """``voc2007``: see :class:`VOCPointingDataset`."""
    check_options("voc2007", options, ("include_difficult",))
    return load_voc2007(split, root=root, image_size=image_size, download=download, **options)

"""Small images of every evaluated image, for the results browser (``index.html``).

The runner writes, besides the rows, each image's input, mask and every experiment's map at
T x T pixels (T = the image size, at most :data:`MAX_TILE` = 64), 8-bit, as PNG *sheets* of
16 x 16 tiles (layout: :mod:`lico_bench.report.figure_files`). Inputs are JPEG (quality 90,
no chroma subsampling: 31 dB PSNR on the shapes images, a third of PNG's bytes, whose
textured backgrounds PNG barely compresses); masks and maps are lossless PNG.

Why PNG sheets: a page opened from ``file://`` may not ``fetch`` a file next to it (the
browser refuses), so a compressed array would have to be inlined or wrapped in a script and
decoded in JavaScript; an ``<img>`` or CSS background is decoded natively, off the main
thread, and only when shown. One sheet holds 256 images, so a 10 000-image experiment is 40
files (not 10 000), and a page that shows a screenful of images loads one or two sheets.
Maps are grey (their colour map is applied in the page); each is min-max scaled on its own.

Resumable as the rows are: each batch's tiles are a part file
(``parts/<exp>/NNNNNN.thumbs.pt``, uint8 [B, T, T]) written before its rows part; the sheets
are written (atomically) when the experiment is merged, before its rows file, so a finished
experiment has its sheets.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from ..data.show import denormalise
from ..io import atomic_path, write_text
from ..report.figure_files import (THUMB_META, THUMBS_PER_ROW, THUMBS_PER_SHEET,  # noqa: F401
                                   sheets_complete, thumb_sheet)

MAX_TILE = 64


def tile_size(image_size: int) -> int:
    """The tile edge T in pixels for images (and maps) ``image_size`` wide: that size, at
    most 64."""
    return min(int(image_size), MAX_TILE)


def _resize(x: torch.Tensor, t: int) -> torch.Tensor:
    """x: [B, C, H, W] float -> [B, C, t, t] (area average; unchanged at t = H = W)."""
    if x.shape[-2:] == (t, t):
        return x
    return F.interpolate(x, size=(t, t), mode="area")


def map_tiles(maps: torch.Tensor, t: int) -> torch.Tensor:
    """maps: [B, H, W] float (NaN/inf read as 0) -> [B, t, t] uint8 on the CPU, each map
    min-max scaled to 0..255 on its own (a constant map is all 0)."""
    m = torch.nan_to_num(maps.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    m = _resize(m[:, None], t)[:, 0]
    lo = m.flatten(1).min(1).values[:, None, None]
    span = m.flatten(1).max(1).values[:, None, None] - lo
    scaled = torch.where(span > 0, (m - lo) / span.clamp_min(1e-30), torch.zeros_like(m))
    return (scaled * 255).round().clamp(0, 255).to(torch.uint8)


def _sheet_png(tiles: torch.Tensor, fmt: str = "PNG") -> bytes:
    """tiles: [k, t, t] or [k, t, t, 3] uint8, k <= 256 -> one sheet, 16 tiles a row, as PNG
    (or JPEG: ``fmt="JPEG"``, quality 90, 4:4:4)."""
    from PIL import Image

    k, t = tiles.shape[0], tiles.shape[1]
    rows = math.ceil(k / THUMBS_PER_ROW)
    pad = rows * THUMBS_PER_ROW - k
    if pad:
        tiles = torch.cat([tiles, tiles.new_zeros((pad, *tiles.shape[1:]))])
    grid = tiles.reshape(rows, THUMBS_PER_ROW, t, t, *tiles.shape[3:])   # [r, 16, t, t(, 3)]
    grid = grid.transpose(1, 2).reshape(rows * t, THUMBS_PER_ROW * t, *tiles.shape[3:])
    buf = io.BytesIO()
    kw = {"quality": 90, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(grid.numpy()).save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_sheets(results: Path, folder: str, tiles: torch.Tensor) -> List[Path]:
    """Write ``tiles`` ([n, t, t] or [n, t, t, 3] uint8, image i = tiles[i]) as the sheets of
    ``thumbs/<folder>/``, each atomically, in order (the last one written last); JPEG for
    the inputs, PNG otherwise."""
    paths = []
    for s in range(0, tiles.shape[0], THUMBS_PER_SHEET):
        path = thumb_sheet(results, folder, s // THUMBS_PER_SHEET)
        with atomic_path(path) as tmp:
            tmp.write_bytes(_sheet_png(tiles[s:s + THUMBS_PER_SHEET].contiguous(),
                                       "JPEG" if folder == "inputs" else "PNG"))
        paths.append(path)
    return paths


def save_input_thumbs(results: Path, ds, n: int, batch_size: int) -> None:
    """The input images (de-normalised, RGB) and masks of the first ``n`` images of ``ds`` as
    sheets, then ``thumbs/meta.json``; nothing when the meta file already says the same
    (a resumed run). One pass over the data, ``batch_size`` images at a time."""
    first = ds.get_batch([0])   # images [1, C, H, W]: the size the maps have too (a grid's)
    t, first_masks = tile_size(first.images.shape[-1]), first.masks
    meta = {"tile": t, "per_row": THUMBS_PER_ROW, "per_sheet": THUMBS_PER_SHEET, "n_images": n,
            "masks": bool(first_masks is not None)}
    path = results / THUMB_META
    if path.is_file() and sheets_complete(results, "inputs", n):
        try:
            if json.loads(path.read_text()) == meta:
                return
        except ValueError:
            pass
    images, masks = [], []
    for s in range(0, n, batch_size):
        batch = ds.get_batch(list(range(s, min(s + batch_size, n))))
        x = denormalise(batch.images.float(), ds.info.mean, ds.info.std).clamp(0, 1)
        images.append((_resize(x, t) * 255).round().to(torch.uint8).permute(0, 2, 3, 1))
        if batch.masks is not None:
            m = _resize(batch.masks.float()[:, None], t)[:, 0]
            masks.append((m * 255).round().to(torch.uint8))
    write_sheets(results, "inputs", torch.cat(images))
    if masks:
        write_sheets(results, "masks", torch.cat(masks))
    write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

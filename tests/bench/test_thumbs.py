"""The small images of the results browser (lico_bench.bench.thumbs): 8-bit tiles computed
exactly, PNG sheets laid out as figure_files says (read back bit for bit), and a run that
writes them for every image, equal to the maps and inputs it saves for the figures."""
import io
import json

import numpy as np
import torch
from PIL import Image

from lico_bench.bench import run
from lico_bench.bench.thumbs import map_tiles, sheets_complete, tile_size, write_sheets
from lico_bench.data.show import denormalise
from lico_bench import create_dataset
from lico_bench.report.figure_files import THUMB_META, thumb_sheet

from .test_runner import checkpoints, make_spec, quiet  # noqa: F401  (fixture)


def test_map_tiles_scale_each_map_to_0_255_exactly():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]],          # min-max: 0, 1/3, 2/3, 1 of 255
                         [[5.0, 5.0], [5.0, 5.0]],          # constant: all 0
                         [[float("nan"), -2.0], [2.0, float("inf")]]])   # NaN/inf read as 0
    got = map_tiles(maps, 2)
    assert got.dtype == torch.uint8 and got.shape == (3, 2, 2)
    # 255 k / 3 = 85 k exactly, and (v + 2) / 4 * 255 for -2, 0, 2: 0, 127.5 -> 128, 255
    assert got.tolist() == [[[0, 85], [170, 255]], [[0, 0], [0, 0]], [[128, 0], [255, 128]]]


def test_map_tiles_average_larger_maps_down_to_64():
    maps = torch.arange(128 * 128, dtype=torch.float32).reshape(1, 128, 128)
    got = map_tiles(maps, tile_size(128))
    assert tile_size(128) == 64 and tile_size(32) == 32 and got.shape == (1, 64, 64)
    # 2 x 2 means of a ramp: a ramp again, from 64.5 to 16319.5, scaled to 0..255 exactly
    # (integers and halves are exact in float32 here): the corners are 0 and 255
    assert got[0, 0, 0] == 0 and got[0, -1, -1] == 255 and (got.flatten()[1:] >= got.flatten()[:-1]).all()


def test_sheets_hold_tile_i_at_row_i_div_16_column_i_mod_16(tmp_path):
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (300, 8, 8, 3), generator=g, dtype=torch.uint8)
    paths = write_sheets(tmp_path, "rgb", tiles)   # any folder but inputs: lossless PNG
    assert paths == [thumb_sheet(tmp_path, "rgb", 0), thumb_sheet(tmp_path, "rgb", 1)]
    assert [p.suffix for p in paths] == [".png", ".png"] and thumb_sheet(tmp_path, "inputs", 0).suffix == ".jpg"
    assert sheets_complete(tmp_path, "rgb", 300) and not sheets_complete(tmp_path, "rgb", 513)
    sheets = [np.asarray(Image.open(p)) for p in paths]
    assert sheets[0].shape == (16 * 8, 16 * 8, 3) and sheets[1].shape == (3 * 8, 16 * 8, 3)
    for i in (0, 17, 255, 256, 299):
        s, j = divmod(i, 256)
        r, c = divmod(j, 16)
        assert np.array_equal(sheets[s][r * 8:(r + 1) * 8, c * 8:(c + 1) * 8], tiles[i].numpy())
    assert not sheets[1][8 * 2 + 8 * 0:, 8 * 12:].any()   # the unused tiles of the last row are 0


def test_run_writes_tiles_of_every_image_equal_to_the_saved_maps(checkpoints, tmp_path):  # noqa: F811
    spec = make_spec({"baseline_tiny": checkpoints["baseline_tiny"]}, tmp_path / "r",
                     models=["baseline_tiny"], methods=["gradcam"],
                     n_images=12, save_maps=5)
    out = run(spec, log=quiet, progress=False)
    meta = json.loads((out / THUMB_META).read_text())
    assert meta == {"tile": 32, "per_row": 16, "per_sheet": 256, "n_images": 12, "masks": True}
    key = "shapes__baseline_tiny__gradcam__seed0"
    sheet = np.asarray(Image.open(thumb_sheet(out, key, 0)))
    assert sheet.shape == (32, 16 * 32) and sheet.dtype == np.uint8
    saved = torch.load(out / "maps" / f"{key}.pt")            # the first 5 maps, raw float32
    want = map_tiles(saved["maps"], 32).numpy()
    for i in range(5):
        assert np.array_equal(sheet[:, i * 32:(i + 1) * 32], want[i])
    ds = create_dataset("shapes", "test", seed=0)
    b = ds.get_batch(list(range(12)))
    x = denormalise(b.images, ds.info.mean, ds.info.std).clamp(0, 1)
    rgb = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    inputs = np.asarray(Image.open(thumb_sheet(out, "inputs", 0)))
    masks = np.asarray(Image.open(thumb_sheet(out, "masks", 0)))
    for i in (0, 11):
        assert np.array_equal(masks[:, i * 32:(i + 1) * 32], b.masks[i].numpy().astype(np.uint8) * 255)
    # inputs are JPEG (quality 90, 4:4:4): a quality floor, not a float tolerance; 30.8 dB
    # measured on these 12 images, 13.0 dB with every tile one image off or RGB reversed
    err = inputs[:, :12 * 32].reshape(32, 12, 32, 3).transpose(1, 0, 2, 3).astype(float) - rgb
    assert 10 * np.log10(255 ** 2 / (err ** 2).mean()) >= 28
    assert not (out / "parts").exists()
    assert json.loads((out / "wall_time.json").read_text())["wall_s"] >= 0
    page = (out / "index.html").read_text()
    assert f"thumbs/${{folder}}" in page and '"tile":32' in page
    assert io.BytesIO(thumb_sheet(out, key, 0).read_bytes()).read(8) == b"\x89PNG\r\n\x1a\n"

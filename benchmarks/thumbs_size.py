"""What the results browser's small images (thumbs/, lico_bench.bench.thumbs) add to committed
results directories written before the runner saved them.

Inputs and masks are written exactly as the runner writes them (the dataset the manifest
names, re-created); the maps of every image are not in these directories, so their sheets
are estimated from the maps they do keep (maps/<experiment>.pt, the first save_maps images):
those tiles' PNG bytes per image, times the number of images. Prints, per directory, its
size, the thumbs' (inputs + masks exact, maps estimated) and the share.

    python benchmarks/thumbs_size.py results/*
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lico_bench.bench.thumbs import _sheet_png, map_tiles, save_input_thumbs, tile_size  # noqa: E402
from lico_bench.data import create_dataset  # noqa: E402
from lico_bench.report.figure_files import read_maps  # noqa: E402


def size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main(dirs) -> None:
    for res in map(Path, dirs):
        spec = json.loads((res / "manifest.json").read_text())["spec"]
        n = spec["n_images"]
        ds = create_dataset(spec["dataset"], spec.get("split", "test"), root=spec.get("root"),
                            image_size=spec.get("image_size"), seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            save_input_thumbs(Path(tmp), ds, n, 100)
            inputs = size(Path(tmp))
        maps = 0.0
        exps = sorted((res / "rows").glob("*.jsonl"))
        for e in exps:
            m = read_maps(res / "maps" / f"{e.stem}.pt")["maps"]
            tiles = map_tiles(torch.as_tensor(m), tile_size(m.shape[-1]))
            maps += len(_sheet_png(tiles)) / len(tiles) * n
        total = size(res)
        print(f"{res}: {total / 2 ** 20:.2f} MiB, {len(exps)} experiments x {n} images; thumbs "
              f"{(inputs + maps) / 2 ** 20:.2f} MiB (inputs + masks {inputs / 2 ** 10:.0f} KiB, maps "
              f"~{maps / 2 ** 10:.0f} KiB, estimated from {len(tiles)} saved maps each) = "
              f"{100 * (inputs + maps) / total:.1f} % of the directory")


if __name__ == "__main__":
    main(sys.argv[1:])

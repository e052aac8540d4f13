"""The results browser's (index.html) load time, memory and scrolling in headless Chromium.

Builds a synthetic results directory of N images (default 10 000; 2 models x 4 methods, one
seed, 7 metrics, 32-px tiles whose content compresses as real maps do: random 4 x 4 maps
upsampled, noisy inputs), writes the page (lico_bench.report.browser.build_page) with the
tables of --tables-from (default results/shapes_default, the same 2 models x 4 methods: the
tables' size depends on the experiments, not on the images; computing them for 10 000
synthetic images would take long and measure nothing of the page), opens it from file:// in headless
Chromium (Selenium + chromedriver) and prints: page and thumbs/ sizes, build time, first
contentful paint, DOMContentLoaded, load and the moment the image list is built (the page's
"lico-list-ready" mark), JS heap and DOM nodes, rows in the DOM, a re-sort's time, and the
time of each render while scrolling through the list. With --results DIR it measures a
copy of an existing results directory instead (its page rebuilt). Each figure is the median
of --repeats fresh page loads in one browser (cache cleared between them is not needed:
file:// has none to speak of).

    python benchmarks/bench_browser.py --n 10000
    python benchmarks/bench_browser.py --results results/shapes_variants
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lico_bench.bench.thumbs import map_tiles, write_sheets  # noqa: E402
from lico_bench.report.browser import PAGE, build_page  # noqa: E402
from lico_bench.report.figure_files import THUMB_META, THUMBS_PER_ROW, THUMBS_PER_SHEET  # noqa: E402

MODELS = ("baseline_r18", "lico_r18")
METHODS = ("gradcam", "gradcampp", "scorecam", "rise")
METRICS = {"insertion": True, "deletion": False, "pointing_game": True, "energy_pointing_game": True,
           "map_dependence": False, "insertion_gain": True, "deletion_gain": False}


def synthetic(root: Path, n: int, tile: int = 32) -> Path:
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    res = root / "res"
    (res / "rows").mkdir(parents=True)
    manifest = {"format": 1, "command": f"synthetic: bench_browser.py --n {n}", "git_commit": "-",
                "dataset": {"class_names": [f"class {c}" for c in range(10)]},
                "spec": {"dataset": "shapes", "split": "test", "n_images": n, "seeds": [0],
                         "models": list(MODELS), "methods": list(METHODS)},
                "metrics": {k: {"higher_is_better": v} for k, v in METRICS.items()},
                "models": {"baseline_r18": {"family": "baseline", "arch": "resnet18", "variant": None},
                           "lico_r18": {"family": "lico", "arch": "resnet18", "variant": "paper"}}}
    (res / "manifest.json").write_text(json.dumps(manifest))
    labels = rng.integers(0, 10, n)
    for model in MODELS:
        pred = np.where(rng.random(n) < 0.9, labels, (labels + 1) % 10)
        prob = rng.uniform(0.3, 1.0, n)
        for method in METHODS:
            vals = {m: rng.random(n) for m in METRICS}
            with open(res / "rows" / f"shapes__{model}__{method}__seed0.jsonl", "w") as f:
                for i in range(n):
                    f.write(json.dumps(dict(dataset="shapes", model=model, method=method, seed=0, image_id=i,
                                            label=int(labels[i]), pred=int(pred[i]), target=int(pred[i]),
                                            prob=float(prob[i]), target_prob=float(prob[i]), map_status="ok",
                                            **{m: float(v[i]) for m, v in vals.items()})) + "\n")
            coarse = torch.rand(n, 1, 4, 4, generator=g)
            maps = F.interpolate(coarse, size=(tile, tile), mode="bilinear", align_corners=False)[:, 0]
            write_sheets(res, f"shapes__{model}__{method}__seed0", map_tiles(maps, tile))
    inputs = (torch.rand(n, tile, tile, 3, generator=g) * 60 + 100).to(torch.uint8)
    write_sheets(res, "inputs", inputs)
    write_sheets(res, "masks", (torch.rand(n, tile, tile, generator=g) > 0.8).to(torch.uint8) * 255)
    (res / THUMB_META).write_text(json.dumps({"tile": tile, "per_row": THUMBS_PER_ROW,
                                              "per_sheet": THUMBS_PER_SHEET, "n_images": n, "masks": True}))
    return res


def size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for f in ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
              "--disable-background-networking --disable-component-update --disable-sync "
              "--window-size=1400,1000 --enable-precise-memory-info").split():
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='lico-bench-chromium-')}")
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


TIMING = """const done = arguments[arguments.length - 1];
function report(fcp) {
  const nav = performance.getEntriesByType('navigation')[0];
  const ready = performance.getEntriesByName('lico-list-ready')[0];
  done({fcp: fcp ? fcp.startTime : null, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
        list_ready: ready ? ready.startTime : null, heap_mb: performance.memory.usedJSHeapSize / 2 ** 20,
        nodes: document.getElementsByTagName('*').length,
        rows: document.querySelectorAll('#list .row').length});
}
new PerformanceObserver((l) => { const f = l.getEntriesByName('first-contentful-paint')[0]; if (f) report(f); })
  .observe({type: 'paint', buffered: true});
setTimeout(() => report(null), 20000);"""

SCROLL = """const list = document.getElementById('list'), done = arguments[0], times = [], sheets = new Set();
let i = 0;
list.scrollIntoView();
function step() {
  if (i === 40) { done({times, sheets: sheets.size, rows: document.querySelectorAll('#list .row').length}); return; }
  const t0 = performance.now();
  list.scrollTop = (list.scrollHeight - list.clientHeight) * i / 39;
  list.dispatchEvent(new Event('scroll'));
  requestAnimationFrame(() => { times.push(performance.now() - t0);
    for (const t of list.querySelectorAll('.tile')) sheets.add(t.style.backgroundImage);
    i++; setTimeout(step, 0); });
}
step();"""

RESORT = """const s = document.getElementById('sort'), t0 = performance.now();
s.value = s.options.length - 1; s.dispatchEvent(new Event('change'));
return performance.now() - t0;"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--results", type=Path, default=None, help="measure a copy of this results directory")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tables-from", type=Path,
                    default=Path(__file__).resolve().parents[1] / "results" / "shapes_default",
                    help="results directory whose summary.csv and methods.csv the synthetic page shows")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    try:
        if a.results:
            res = tmp / "res"
            shutil.copytree(a.results, res)
            what = str(a.results)
        else:
            t0 = time.perf_counter()
            res = synthetic(tmp, a.n)
            for t in ("summary.csv", "methods.csv"):
                if (a.tables_from / t).is_file():
                    shutil.copy(a.tables_from / t, res / t)
            what = f"synthetic, {a.n} images, 2 models x 4 methods ({time.perf_counter() - t0:.0f} s to make)"
        t0 = time.perf_counter()
        build_page(res)
        built = time.perf_counter() - t0
        print(f"{what}: index.html {size(res / PAGE) / 2 ** 20:.2f} MiB (built in {built:.1f} s), thumbs/ "
              f"{size(res / 'thumbs') / 2 ** 20 if (res / 'thumbs').exists() else 0:.2f} MiB, whole directory "
              f"{size(res) / 2 ** 20:.2f} MiB")
        d = browser()
        try:
            runs = []
            for _ in range(a.repeats):
                d.get("about:blank")
                d.get((res / PAGE).as_uri())
                runs.append(d.execute_async_script(TIMING))
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}
            print("median of {} loads: first contentful paint {fcp:.0f} ms, DOMContentLoaded {dcl:.0f} ms, "
                  "load {load:.0f} ms, image list built {list_ready:.0f} ms; JS heap {heap_mb:.0f} MiB, "
                  "{nodes:.0f} DOM elements, {rows:.0f} list rows in the DOM".format(a.repeats, **med))
            print(f"re-sort by a paired difference: {d.execute_script(RESORT):.0f} ms")
            d.set_script_timeout(120)
            s = d.execute_async_script(SCROLL)
            t = sorted(s["times"])
            print(f"scrolling through the list in 40 jumps: render + frame median {t[len(t) // 2]:.0f} ms, "
                  f"max {t[-1]:.0f} ms; rows in the DOM afterwards {s['rows']}; distinct sheets referenced "
                  f"on the way {s['sheets']}")
            print(f"after scrolling: JS heap {d.execute_async_script(TIMING)['heap_mb']:.0f} MiB")
        finally:
            d.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

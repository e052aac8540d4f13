"""The results browser (index.html) in a real browser: headless Chromium from the system's
packages (Debian: chromium, chromium-driver; .ci/run installs them), driven by Selenium,
opening the page from file:// with the network of the page never used. Checked: the tables
show summary.csv's values, verdicts coloured; a column sorts; the image list sorts by a
metric and by a paired difference, filters by class and by correctness; an image opens, its
tiles' sheets load, keys move through the images; only the rows on screen are in the DOM and
only their sheets are requested; a screenshot shows the page's colours."""
import csv
import io
import json
import re
import shutil
import tempfile

import numpy as np
import pytest

from lico_bench.report.browser import PAGE, build_page

from .browser_results import CLASSES, make_results

N = 300   # two sheets of 256 images
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
         "--disable-background-networking --disable-component-update --disable-sync "
         "--force-color-profile=srgb --window-size=1400,1000").split()


def _why_no_browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not CHROMIUM or not DRIVER:
        return ("no Chromium or chromedriver on this machine (apt-get install chromium "
                "chromium-driver; .ci/run installs them where it can)")
    return None


pytestmark = pytest.mark.skipif(_why_no_browser() is not None, reason=str(_why_no_browser()))


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    res = make_results(tmp_path_factory.mktemp("page"), N, methods=("gradcam",))
    from PIL import Image

    (res / "figures").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(res / "figures" / "paired.png")
    build_page(res)   # now with the figure
    return res


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for f in FLAGS:
        opts.add_argument(f)
    profile = tempfile.mkdtemp(prefix="lico-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, res):
    browser.get((res / PAGE).as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return browser


def data_of(res):
    html = (res / PAGE).read_text()
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1))


def shown_rows(driver):
    """(image id, label text, sort value text) of the list rows in the DOM, in list order."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#list .row')].sort((a, b) => a.dataset.pos - b.dataset.pos)
          .map((r) => [+r.dataset.id, r.children[1].textContent, r.querySelector('.sortval').textContent]);""")


def choose(driver, select_id, text):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_visible_text(text)


def expected_order(values, desc):
    """The page's order: by value (descending if ``desc``), ties by position; missing last."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    key = -v if desc else v
    return sorted(range(len(v)), key=lambda k: (np.isnan(v[k]), 0 if np.isnan(v[k]) else key[k], k))


def test_tables_show_the_csv_values_with_verdicts_coloured(page, res):
    want = list(csv.reader(io.StringIO((res / "summary.csv").read_text())))
    got = page.execute_script("""const t = document.getElementById('table-0');
        return [[...t.tHead.rows[0].cells].slice(1).map((c) => c.textContent),
                ...[...t.tBodies[0].rows].map((r) => [...r.cells].slice(1).map((c) => c.textContent))];""")
    assert got == want
    head = want[0]
    cls = page.execute_script("""return [...document.getElementById('table-0').tBodies[0].rows]
        .map((r) => r.cells[arguments[0] + 1].className);""", head.index("verdict"))
    colour = {"": "", "no clear difference": "v-none", "LICO better": "v-trained", "baseline better": "v-base"}
    assert cls == [colour[r[head.index("verdict")]] for r in want[1:]]
    assert any(c for c in cls)


def test_a_peers_verdict_is_coloured_as_its_trained_side(browser, tmp_path):
    # a table of LICO's peers says "guided better"; an explainer pair says "rise better"
    res = make_results(tmp_path, 12, thumbs=False, methods=("gradcam",),
                       models=("baseline_r18", "guided_r18", "lico_r18"))
    browser.get((res / PAGE).as_uri())
    verdicts = ["guided better", "LICO better", "baseline better", "rise better",
                "no clear difference", ""]
    got = browser.execute_script("return arguments[0].map(verdictClass);", verdicts)
    assert got == ["v-trained", "v-trained", "v-base", "v-other", "v-none", ""]


def test_a_table_column_sorts_both_ways(page, res):
    want = list(csv.reader(io.StringIO((res / "summary.csv").read_text())))
    for name in ("mean", "p_wilcoxon"):
        i = want[0].index(name)
        vals = [r[i] for r in want[1:]]
        asc = sorted((v for v in vals if v), key=float) + [v for v in vals if not v]   # empty last
        desc = sorted((v for v in vals if v), key=float, reverse=True) + [v for v in vals if not v]
        if name == "mean":   # negative differences: numeric order is not the strings' order
            assert asc != sorted(vals)
        th = page.find_element("css selector", f'#table-0 th[data-col="{name}"]')
        col = ("return [...document.getElementById('table-0').tBodies[0].rows]"
               f".map((r) => r.cells[{i + 1}].textContent);")
        th.click()
        assert th.get_attribute("aria-sort") == "ascending" and page.execute_script(col) == asc
        th.click()
        assert th.get_attribute("aria-sort") == "descending" and page.execute_script(col) == desc


def test_images_sort_by_a_metric_and_by_a_paired_difference(page, res):
    data = data_of(res)
    lico = next(e for e in data["exps"] if e["model"] == "lico_r18")
    base = next(e for e in data["exps"] if e["model"] == "baseline_r18")
    choose(page, "sort", "lico_r18 gradcam s0: insertion")
    choose(page, "order", "descending")
    rows = shown_rows(page)
    order = expected_order(lico["values"]["insertion"], desc=True)
    assert [r[0] for r in rows] == [data["ids"][k] for k in order[:len(rows)]] and len(rows) >= 5
    diff = [a - b for a, b in zip(lico["values"]["deletion"], base["values"]["deletion"])]
    choose(page, "sort", "lico_r18 − baseline_r18 gradcam s0: deletion")
    choose(page, "order", "ascending")
    rows = shown_rows(page)
    assert [r[0] for r in rows] == [data["ids"][k] for k in expected_order(diff, desc=False)[:len(rows)]]
    v = diff[expected_order(diff, desc=False)[0]]
    # the list shows the value to 4 significant digits (toPrecision(4)): within half a unit
    assert abs(float(rows[0][2]) - v) <= 0.5 * 10 ** (np.floor(np.log10(abs(v))) - 3)


def test_images_filter_by_class_and_by_a_models_correctness(page, res):
    data = data_of(res)
    labels = np.array(data["labels"])
    choose(page, "class", CLASSES[2])
    n2 = int((labels == 2).sum())
    assert page.find_element("id", "count").text == f"{n2} of {N} images"
    assert {r[1] for r in shown_rows(page)} == {CLASSES[2]}
    pred = np.array(next(e for e in data["exps"] if e["model"] == "lico_r18")["pred"])
    choose(page, "correct", "lico_r18 s0 wrong")
    wrong = np.flatnonzero((labels == 2) & (pred != labels))
    assert page.find_element("id", "count").text == f"{len(wrong)} of {N} images"
    assert [r[0] for r in shown_rows(page)] == [data["ids"][k] for k in wrong[:len(shown_rows(page))]]


def test_images_filter_by_a_metric_threshold(page, res):
    data = data_of(res)
    v = np.array(next(e for e in data["exps"] if e["model"] == "baseline_r18")["values"]["deletion"])
    choose(page, "sort", "baseline_r18 gradcam s0: deletion")
    page.find_element("id", "thr").send_keys("0.25")
    choose(page, "cmp", "<")
    assert page.find_element("id", "count").text == f"{int((v < 0.25).sum())} of {N} images"
    below = [k for k in expected_order(v.tolist(), desc=False) if v[k] < 0.25]
    rows = shown_rows(page)
    assert [r[0] for r in rows] == [data["ids"][k] for k in below[:len(rows)]]
    choose(page, "cmp", ">")
    assert page.find_element("id", "count").text == f"{int((v > 0.25).sum())} of {N} images"


def _loaded(driver, url):
    """Whether the browser loads the image at ``url`` (relative to the page)."""
    return driver.execute_async_script("""const done = arguments[1], img = new Image();
        img.onload = () => done(img.naturalWidth > 0); img.onerror = () => done(false);
        img.src = arguments[0];""", url)


def test_an_image_opens_with_its_tiles_and_values_and_keys_move(page, res):
    from selenium.webdriver.common.keys import Keys

    data = data_of(res)
    page.find_element("css selector", "#list .row").click()
    detail = page.find_element("id", "detail")
    assert detail.is_displayed() and "image #0: " + CLASSES[data["labels"][0]] in detail.text
    tiles = page.execute_script("""return [...document.querySelectorAll('#detail .tile')]
        .map((t) => [t.style.backgroundImage, t.style.backgroundPosition]);""")
    assert len(tiles) == 2 + len(data["exps"])   # input, mask, one map per experiment
    for bg, _ in tiles:
        url = re.fullmatch(r'url\("(.+)"\)', bg).group(1)
        assert (res / url).is_file() and _loaded(page, url), url
    cells = page.execute_script("""return [...document.getElementById('detail-values').rows]
        .map((r) => [...r.cells].map((c) => c.textContent));""")
    head = cells[0]
    for e, r in zip(data["exps"], cells[1:]):
        assert r[:4] == [e["model"], e["method"], "0", CLASSES[e["pred"][0]]]
        v = e["values"]["insertion"][0]
        assert abs(float(r[head.index("insertion")]) - v) <= 0.5 * 10 ** (np.floor(np.log10(abs(v))) - 3)
    page.find_element("tag name", "body").send_keys(Keys.ARROW_RIGHT)
    assert "image #1: " in detail.text   # the next image of the list (sorted by id)
    k = 20   # image 20: tile 20 of sheet 0, row 1, column 4 of 16, at 160 px a tile
    for _ in range(k - 1):
        page.find_element("tag name", "body").send_keys(Keys.ARROW_DOWN)
    assert f"image #{k}: " in detail.text
    pos = page.execute_script("return document.querySelector('#detail .tile').style.backgroundPosition")
    assert pos == f"-{(k % 16) * 160}px -{(k // 16) * 160}px"
    page.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert not detail.is_displayed()
    sel = page.execute_script("return +document.querySelector('#list .row.sel').dataset.id")
    assert sel == k


def test_only_rows_on_screen_are_built_and_their_sheets_loaded(page, res):
    # the sheets the page refers to (a CSS background is fetched only for an element in the DOM)
    sheets = ("return [...document.querySelectorAll('#list .tile')].map((t) => "
              "t.style.backgroundImage.slice(5, -2).split('thumbs/')[1]);")
    n_rows = page.execute_script("return document.querySelectorAll('#list .row').length")
    height = page.execute_script("return document.getElementById('list').clientHeight")
    assert n_rows <= height // 72 + 8 < N     # rows of 72 px, 3 above and below the screen
    first = page.execute_script(sheets)
    assert "inputs/0000.jpg" in first and not any("/0001." in s for s in first)
    page.execute_script("const l = document.getElementById('list'); l.scrollTop = l.scrollHeight;")
    page.execute_script("return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert shown_rows(page)[-1][0] == N - 1
    assert "inputs/0001.jpg" in page.execute_script(sheets)


def test_a_table_link_shows_the_images_behind_its_row(page, res):
    link = page.find_element(
        "xpath", "//table[@id='table-0']//tr[td[2]='paired' and td[5]='deletion']//a[@class='img-link']")
    link.click()
    from selenium.webdriver.support.ui import Select

    assert Select(page.find_element("id", "sort")).first_selected_option.text == \
        "lico_r18 − baseline_r18 gradcam s0: deletion"
    assert page.find_element("id", "order").get_attribute("value") == "desc"   # lower is better: worst first


def test_figures_and_run_section_and_a_screenshot_that_is_not_blank(page, res, tmp_path):
    from PIL import Image

    fig = page.find_element("css selector", "#figures img")   # loading=lazy: shown, then loaded
    page.execute_script("arguments[0].scrollIntoView()", fig)
    assert page.execute_async_script("""const img = arguments[0], done = arguments[1];
        img.decode().then(() => done(img.naturalWidth), () => done(0));""", fig) == 40
    run = page.find_element("id", "run-table").text
    assert "lico-bench run --model baseline_r18 --model lico_r18" in run and "0123abc" in run
    page.execute_script("document.getElementById('images').scrollIntoView()")
    page.execute_script("""return Promise.all([...document.querySelectorAll('#list .tile')].map((t) => {
        const i = new Image(); i.src = t.style.backgroundImage.slice(5, -2); return i.decode(); }))""")
    shot = tmp_path / "page.png"
    page.save_screenshot(str(shot))
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert (img != 255).any(axis=2).mean() > 0.1          # a tenth of the page is not white (0 when blank)
    colours = {tuple(c) for c in img.reshape(-1, 3)[::7]}
    assert len(colours) > 100
    # image 3's mask tile is the solid grey 103 (browser_results, a lossless PNG), drawn as is
    # on 64 x 64 pixels, of which the tile's 2-px margin and borders take none
    assert (img == (103, 103, 103)).all(axis=2).sum() >= 64 * 64

"""The results browser's page (lico_bench.report.browser) without a browser: the data it
embeds against the rows, its links (relative, offline), the note for results without
thumbs/, and that report writes it atomically next to unchanged tables."""
import json
import re

import pytest

from lico_bench.report.browser import PAGE, build_page, page_data
from lico_bench.report.common import load_manifest, load_rows

from .browser_results import CLASSES, MODELS, key, make_results

N = 300   # two sheets of 256


def embedded(res):
    html = (res / PAGE).read_text()
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
    return html, json.loads(m.group(1))


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("browser"), N, methods=("gradcam",))


def test_embedded_values_are_the_rows_to_six_digits(res):
    html, data = embedded(res)
    rows = load_rows(res, load_manifest(res))
    assert data["ids"] == list(range(N)) and data["class_names"] == CLASSES
    assert data["pairs"] == [["lico_r18", "baseline_r18"]]   # (LICO, baseline), as pair_models
    assert data["sides"] == ["LICO"]   # what the verdicts call the trained side
    assert [(e["model"], e["method"]) for e in data["exps"]] == [(m, "gradcam") for m in MODELS]
    assert data["columns"][:4] == ["prob", "insertion", "deletion", "pointing_game"]
    for e in data["exps"]:
        g = rows[(rows.model == e["model"]) & (rows.method == e["method"])].sort_values("image_id")
        assert e["key"] == key(e["model"], e["method"]) and e["thumbs"]
        assert e["pred"] == g["pred"].tolist() and data["labels"] == g["label"].tolist()
        for c in ("prob", "insertion", "deletion", "pointing_game"):
            # the page's rounding is float('%.6g'), so this comparison is exact
            assert e["values"][c] == [float(f"{v:.6g}") for v in g[c]]


def test_page_is_offline_and_its_links_relative(res):
    html, _ = embedded(res)
    code = re.sub(r'<script id="data".*?</script>', "", html, flags=re.S)
    assert not re.search(r"\b(https?|ftp|data|file):|=\"//|url\(\"?//|@import", code), \
        "no URL outside the results directory"
    for link in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert not link.startswith("/") and ".." not in link and (res / link).is_file(), link


def test_the_data_cannot_close_its_script_element(tmp_path):
    res = make_results(tmp_path, 4, thumbs=False, methods=("gradcam",))
    man = load_manifest(res)
    man["dataset"]["class_names"] = ["</script><b>x</b>"] + CLASSES[1:]
    build_page(res, manifest=man)
    html, data = embedded(res)
    assert data["class_names"][0] == "</script><b>x</b>" and "<b>x</b>" not in html


def test_results_without_thumbs_get_a_one_line_note(tmp_path):
    res = make_results(tmp_path, 20, thumbs=False, methods=("gradcam",))
    html, data = embedded(res)
    assert data["tile"] is None and not any(e["thumbs"] for e in data["exps"])
    notes = re.findall(r'<p class="note" id="no-thumbs">([^<]*)</p>', html)
    assert len(notes) == 1 and "\n" not in notes[0]


def test_thumbs_of_other_image_count_are_not_used(res, tmp_path):
    """A meta file for another number of images (a stale thumbs/ folder) is ignored."""
    man = load_manifest(res)
    rows = load_rows(res, man)
    data = page_data(res, man, rows[rows.image_id < N - 1])
    assert data["tile"] is None and not data["inputs"]


def test_report_keeps_the_tables_and_rewrites_the_page(res):
    before = {p: p.read_bytes() for p in sorted(res.glob("*.csv")) + sorted(res.glob("*.md"))}
    (res / PAGE).write_text("old")
    from lico_bench.report.tables import build_report

    paths = build_report(res)
    assert paths["html"] == res / PAGE and (res / PAGE).read_text().startswith("<!DOCTYPE html>")
    assert {p: p.read_bytes() for p in before} == before
    assert not list(res.glob(".index.html.*"))   # no temporary file left (lico_bench.io)



def test_figures_command_writes_the_page_with_its_figures(tmp_path, capsys):
    from lico_bench.cli import main

    res = make_results(tmp_path, 20, thumbs=False, methods=("gradcam",))
    (res / PAGE).unlink()
    assert main(["figures", str(res), "--format", "png"]) == 0
    html = (res / PAGE).read_text()
    assert (res / "figures" / "paired.png").is_file() and 'src="figures/paired.png"' in html
    assert f"results browser: {res / PAGE}" in capsys.readouterr().out


def test_a_damaged_meta_or_wall_time_file_is_left_out(tmp_path):
    """Garbage in thumbs/meta.json or wall_time.json: no pictures, no wall time, no error."""
    res = make_results(tmp_path, 20, methods=("gradcam",))
    (res / "thumbs" / "meta.json").write_text("{not json")
    (res / "wall_time.json").write_text('{"wall_s": "12; DROP"}')
    build_page(res)
    html, data = embedded(res)
    assert data["tile"] is None and "no-thumbs" in html and "<td>not recorded</td>" in html
    (res / "wall_time.json").write_text('{"command": "lico-bench run", "wall_s": 12.5}')
    build_page(res)
    assert "<td>12.5 s</td>" in (res / PAGE).read_text()


def test_a_peer_family_is_a_trained_side_of_its_own(tmp_path):
    # guided_r18 pairs with the baseline too; its verdicts say "guided better" (side_name)
    res = make_results(tmp_path, 12, thumbs=False, methods=("gradcam",),
                       models=("baseline_r18", "guided_r18", "lico_r18"))
    data = embedded(res)[1]
    assert data["pairs"] == [["guided_r18", "baseline_r18"], ["lico_r18", "baseline_r18"]]
    assert data["sides"] == ["LICO", "guided"]

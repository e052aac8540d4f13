"""The documentation's links: every relative Markdown link of README.md and docs/*.md names a
file of the repository, and a link to a heading (``page.md#anchor``) names a heading that page
has (GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)   # no headings in code
    heads = re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _links():
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):                     # http:, mailto:, file:
                yield page, target


def test_every_relative_link_resolves():
    links = list(_links())
    pages = {p.name for p, _ in links}
    assert {"README.md", "commands.md", "datasets.md", "metrics.md", "outputs.md"} <= pages
    for page, target in links:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file() and ROOT in dest.parents, (page.name, target)
        if anchor:
            assert dest.suffix == ".md" and anchor in _anchors(dest), (page.name, target)


def test_the_anchor_rule_is_githubs():
    """Three headings whose GitHub anchors are known (as GitHub renders them)."""
    page = ROOT / "docs" / "metrics.md"
    assert {"map-dependence", "localisation-without-masks-the-grid-pointing-game",
            "insertion-deletion-pointing-game-road-randomisation-check"} <= _anchors(page)

"""The README and docs/ point at things that exist: every relative link (and its #anchor), and
every tools/... and configs/... path they name."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w/.-])((?:tools|configs)/[\w./-]*\w)")


def anchors(page: pathlib.Path) -> set:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#+\s+(.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_there_are_docs_pages_and_the_readme_is_a_landing_page():
    """The goals docs/development.md sets for the README: at most 200 lines, the quick start's two
    commands within its first 40."""
    assert len(PAGES) > 5
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    first = "\n".join(lines[:40])
    assert "## Quick start" in first and "bash tools/demo.sh" in first and "bash tools/test.sh" in first


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_tools_and_configs_exist(page):
    missing = sorted({p for p in PATH.findall(page.read_text()) if not (ROOT / p).exists()})
    assert not missing, f"{page.name} names paths that do not exist: {missing}"

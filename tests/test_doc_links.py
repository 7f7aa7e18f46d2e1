"""Every relative link in the repository's markdown resolves: the file exists, and a
``#fragment`` names a heading of the target page (GitHub's anchor rules).

External links (``http(s)://``, ``mailto:``) are not fetched: the suite runs offline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folders that hold no project docs (virtualenvs, caches, generated output).
SKIP_DIRS = {"bench-results", "demo-output", "build", "spark-warehouse", "node_modules"}
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def markdown_files() -> list[Path]:
    """Every ``*.md`` of the project, outside hidden and generated folders."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".md")]
    return found


def prose(markdown: str) -> str:
    """``markdown`` without fenced blocks and inline code (links there are examples)."""
    return _CODE.sub("", _FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    """Targets of the inline links and images of ``markdown``'s prose, in order."""
    return _LINK.findall(prose(markdown))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor a page's headings define (duplicates get ``-1``, ``-2``, … as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown)):
        base = anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that do not resolve, with the reason."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, …
            continue
        path_part, _, fragment = target.partition("#")
        dest = page if not path_part else (page.parent / unquote(path_part)).resolve()
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
        elif fragment and dest.suffix == ".md":
            if fragment not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading with anchor #{fragment} in {dest.name}")
        elif dest.is_file() and not str(dest).startswith(str(ROOT)):
            problems.append(f"{target}: points outside the repository")
    return problems


def test_link_and_anchor_extraction() -> None:
    text = (
        'See [a](a.md), ![img](img/x.png "title") and [b](b.md#some-part).\n'
        "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[web](https://example.com)\n"
    )
    assert links(text) == ["a.md", "img/x.png", "b.md#some-part", "https://example.com"]
    assert (
        anchor("`FeederClient(endpoint, *, job)` — the client")
        == "feederclientendpoint--job--the-client"
    )
    assert anchor("Writer (`tests/bench/test_bench_writer.py`, groups `writer`)") == (
        "writer-testsbenchtest_bench_writerpy-groups-writer"
    )
    assert anchors("# Top\n## Part\n## Part\n```\n# not a heading\n```\n") == {
        "top",
        "part",
        "part-1",
    }


def test_a_broken_link_and_a_broken_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There\n## A part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-part) [gone](missing.md) [bad](there.md#nope) [self](#x)\n# X\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert problems[0].startswith("missing.md: no such file")
    assert problems[1].startswith("there.md#nope: no heading")


def test_the_docs_are_linked_from_the_readme() -> None:
    readme = links((ROOT / "README.md").read_text(encoding="utf-8"))
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README.md does not link docs/{doc.name}"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []

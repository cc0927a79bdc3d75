"""The documentation against the code and against itself: docs/config.md is what the schema generates
and lists every field, and every relative link and #anchor in README.md and docs/*.md resolves (files
and images exist, anchors match GitHub's heading slugs in the target file). External links are not
fetched: the tests run without a network.

markdown-it-py (rich's Markdown parser) reads the pages, so links inside code blocks and code spans
are not links, as on GitHub."""

from __future__ import annotations

import dataclasses
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

from datamodules.config import DataConfig
from harness import config_docs
from harness.config.train_config import TrainConfig
from harness.sweep.spec import Options
from tests.helpers import REPO

CONFIG_PAGE = REPO / "docs" / "config.md"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKDOWN = MarkdownIt("commonmark").enable("table")


def test_config_page_is_what_the_schema_generates() -> None:
    assert CONFIG_PAGE.read_text() == config_docs.render(), (
        f"docs/config.md differs from the schema's dataclasses: regenerate it with `{config_docs.COMMAND}`"
    )


def schema_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of ``cls``, walked from the dataclasses themselves; TrainConfig.data is a
    free mapping in the dataclass, checked against DataConfig."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = DataConfig if (cls, f.name) == (TrainConfig, "data") else hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += [f"{key}.*", *schema_keys(hint, f"{key}.")]
        else:
            keys.append(key)
    return keys


def test_config_page_lists_every_field() -> None:
    rows = [line for line in CONFIG_PAGE.read_text().splitlines() if line.startswith("| ")]
    listed = {cell.split("`")[1] for cell in (row.split(" | ")[0] for row in rows) if "`" in cell}
    expected = schema_keys(TrainConfig) + schema_keys(Options, "convbench.")
    expected = [f"{k}.*" if k == "model" else k for k in expected]  # free keys: the page says how they work
    assert len(expected) > 80  # the walk itself found the schema
    assert [k for k in expected if k not in listed] == []
    assert sorted(listed - set(expected)) == []


@dataclass
class Undocumented:
    documented: int = 0
    """What it is for."""
    forgotten: int = 0


def test_a_field_without_a_docstring_stops_the_generator() -> None:
    with pytest.raises(config_docs.UndocumentedField, match=r"Undocumented\.forgotten \(x\.forgotten\)"):
        list(config_docs.walk(Undocumented, "x."))


def slug(text: str) -> str:
    """GitHub's heading anchor (github-slugger): lower case, punctuation other than '-' and '_' dropped,
    spaces to hyphens."""
    return "".join(c for c in text.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading's gets -1, -2, ... as on GitHub."""
    tokens = MARKDOWN.parse(page.read_text())
    seen: Counter[str] = Counter()
    out = set()
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type != "heading_open":
            continue
        text = "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))
        base = slug(text)
        out.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return out


def links(page: Path) -> list[str]:
    """Every link target and image source of a page, outside code."""
    found = []
    for token in MARKDOWN.parse(page.read_text()):
        for child in token.children or []:
            if child.type == "link_open":
                found.append(str(child.attrs["href"]))
            elif child.type == "image":
                found.append(str(child.attrs["src"]))
    return found


def test_the_anchors_are_githubs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    headings = ["With W&B's agent", "Across ranks: `bench NAME... --devices N [--nodes M]`", "channels_last"]
    page.write_text("".join(f"## {h}\n\n" for h in [*headings, headings[0]]))
    assert anchors(page) == {
        "with-wbs-agent",
        "across-ranks-bench-name---devices-n---nodes-m",
        "channels_last",
        "with-wbs-agent-1",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:  # http(s), mailto: not fetched
            continue
        path = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if not path.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository (a fresh clone lacks it)")
        elif not path.exists():
            broken.append(f"{target}: no such file")
        elif parts.fragment and path.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not a markdown page")
        elif parts.fragment and parts.fragment not in anchors(path):
            broken.append(f"{target}: no heading with that anchor in {path.relative_to(REPO)}")
    assert broken == [], f"{page.relative_to(REPO)}: " + "; ".join(broken)

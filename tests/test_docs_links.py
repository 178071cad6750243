"""The project stands alone: every relative link in its Markdown resolves inside the checkout, and
nothing points at material a clone does not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.md")])


def test_every_relative_link_resolves() -> None:
    broken = [
        (str(page.relative_to(ROOT)), link)
        for page in PAGES
        for link in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8"))
        if not link.startswith(("http://", "https://", "mailto:")) and not (page.parent / link).exists()
    ]
    assert PAGES and broken == []


def test_nothing_refers_to_the_steering_folder() -> None:
    # The steering folder beside a checkout; spelt in parts so this test does not name it itself.
    outside = "/".join(["..", "shared"])
    sources = [*PAGES, *ROOT.glob("sql/**/*.sql"), *ROOT.glob("refproj*/**/*.py")]
    assert [str(p.relative_to(ROOT)) for p in sources if outside in p.read_text(encoding="utf-8")] == []

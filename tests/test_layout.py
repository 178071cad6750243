"""The README's Layout section names every module of the two packages, and names nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("refproj", "refproj_bench")
# "About 400" for the product and "about 300" for the benchmark (issue 12): each stays readable
# module by module.
MAX_PRODUCT_MODULE_LINES = 400
MAX_BENCH_MODULE_LINES = 300
LIMITS = {"refproj": MAX_PRODUCT_MODULE_LINES, "refproj_bench": MAX_BENCH_MODULE_LINES}


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_layout_names_every_module_and_nothing_else() -> None:
    named: set[str] = set()
    package = None
    for line in layout_block().splitlines():
        top = re.match(r"^(\S+)/\s", line + " ")
        if top:
            package = top.group(1) if top.group(1) in PACKAGES else None
            continue
        if package is not None and line.startswith("  "):
            # "  first.py second.py   what they are": the names come before the wide gap.
            names = re.split(r"\s{2,}", line.strip())[0]
            named.update(f"{package}/{token}" for token in names.split())
    modules = {
        f"{package}/{path.name}" if path.is_file() else f"{package}/{path.name}/"
        for package in PACKAGES
        for path in (ROOT / package).iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert modules - named == set(), "modules missing from README Layout"
    assert named - modules == set(), "README Layout names modules that do not exist"


def test_no_module_is_long() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for package, limit in LIMITS.items()
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > limit
    }
    assert long == {}

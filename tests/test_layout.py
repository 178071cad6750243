"""docs/ARCHITECTURE.md's Layout names every module of the two packages, every top-level entry of
the checkout and every file directly in sql/, and names no module that is gone."""

from __future__ import annotations

import re
import subprocess
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("refproj", "refproj_bench")
# "About 400" for the product and "about 300" for the benchmark (issue 12): each stays readable
# module by module.
MAX_PRODUCT_MODULE_LINES = 400
MAX_BENCH_MODULE_LINES = 300
LIMITS = {"refproj": MAX_PRODUCT_MODULE_LINES, "refproj_bench": MAX_BENCH_MODULE_LINES}


def layout_block() -> str:
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = architecture.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def named_paths() -> list[str]:
    """The names before the wide gap on the block's unindented lines ("sql/000N_*.sql", "docs/")."""
    return [
        token
        for line in layout_block().splitlines()
        if line and not line[0].isspace()
        for token in re.split(r"\s{2,}", line)[0].split()
    ]


def test_layout_names_every_top_level_entry_and_sql_file() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    wanted = {path.split("/")[0] + ("/" if "/" in path else "") for path in tracked}
    wanted |= {path for path in tracked if re.fullmatch(r"sql/[^/]+", path)}
    wanted -= {".gitignore", ".ci/"}  # named as .ci/run
    # "000N", "NN": digits.
    named = [re.sub(r"(?<=[0-9/])N+", lambda n: "[0-9]" * len(n.group()), name) for name in named_paths()]
    missing = {
        path
        for path in wanted
        if not any(fnmatch(path, name) or (name.startswith(path) and path.endswith("/")) for name in named)
    }
    assert missing == set(), "missing from docs/ARCHITECTURE.md Layout"
    assert "sql/0001_source_tables.sql" in wanted and "alembic.ini" in wanted


def test_layout_names_every_module_and_nothing_else() -> None:
    named: set[str] = set()
    package = None
    for line in layout_block().splitlines():
        if line and not line[0].isspace():
            top = re.match(r"^(\S+)/\s", line + " ")
            package = top.group(1) if top and top.group(1) in PACKAGES else None
            continue
        # A module line is indented two spaces; a deeper one continues the line above.
        if package is not None and line.startswith("  ") and not line.startswith("   "):
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
    assert modules - named == set(), "modules missing from docs/ARCHITECTURE.md Layout"
    assert named - modules == set(), "docs/ARCHITECTURE.md Layout names modules that do not exist"


def test_no_module_is_long() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for package, limit in LIMITS.items()
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > limit
    }
    assert long == {}

"""`pip install .` ships sql/ and migrations/ inside the package: an installed copy can migrate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_sql_and_migrations_and_migrates(tmp_path: Path, empty_db_url: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("refproj-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as archive:
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    # A library: psycopg without a libpq build unless the application asks for one.
    assert "psycopg>=3.1" in requires
    assert [r for r in requires if "binary" in r and "extra" not in r] == []
    assert "psycopg[binary]>=3.1; extra == 'binary'" in requires
    assert {
        "refproj_bench/__init__.py",
        "refproj_bench/figures/overview.py",
        "refproj/_sql/0003_projection.sql",
        "refproj/_sql/projection/17_refresh.sql",
        "refproj/_sql/queries.sql",
        "refproj/_migrations/env.py",
        "refproj/_migrations/versions/0004_projection_by_concern.py",
        "refproj/py.typed",
    } <= names
    # Run the installed copy from a directory with no checkout around it.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "DATABASE_URL": empty_db_url}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import refproj, sys; print(refproj.__file__);"
            " from refproj.cli import main; sys.exit(main(['migrate']))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported_from, migrated = result.stdout.splitlines()
    assert imported_from == str(tmp_path / "site" / "refproj" / "__init__.py")
    assert migrated.startswith("migrated ")
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT version_num FROM refproj_alembic_version").fetchone() == ("0005",)
        assert conn.execute("SELECT count(*) FROM refproj.connection_summaries()").fetchone() == (0,)


def test_product_does_not_import_the_benchmark() -> None:
    code = (
        "import sys, pkgutil, importlib, refproj;"
        " [importlib.import_module(m.name) for m in pkgutil.walk_packages(refproj.__path__, 'refproj.')"
        " if not m.name.endswith('__main__')];"
        " print(sorted(m for m in sys.modules if m.startswith('refproj_bench')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_bench_without_the_extra_is_one_line_and_exit_1() -> None:
    # The benchmark package hidden from the import system, as when refproj[bench] is not installed.
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'refproj_bench':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from refproj.cli import main\n"
        "sys.exit(main(['bench', '--profiles', 'tiny']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "refproj: the benchmark is not installed (refproj_bench missing): pip install 'refproj[bench]'"
    ]


def test_constraints_pin_every_declared_dependency() -> None:
    """make install pins what it installs: every dependency pyproject.toml names has an == line."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [d for d in extra if not d.startswith("refproj[")]
    pinned = {
        _normal(line.split("==")[0]): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    names = {_normal(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in declared}
    assert names and {name for name in names if name not in pinned} == set()
    assert "psycopg-binary" in pinned and "pip" in pinned and "hatchling" in pinned


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dependencies_page_names_what_each_extra_installs() -> None:
    """docs/DEPENDENCIES.md's row of each extra (dev's excepted: "the above, plus") names every
    package the extra declares."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    rows = {
        row.group(1): row.group(2).lower()
        for row in re.finditer(
            r"^\| `refproj\[(\w+)\]` \|(.*)$", (ROOT / "docs/DEPENDENCIES.md").read_text(), re.M
        )
    }
    unnamed = {
        (extra, name)
        for extra, declared in extras.items()
        if extra != "dev"
        for dependency in declared
        if not dependency.startswith("refproj[")
        and (name := re.split(r"[\[<>=!~; ]", dependency, maxsplit=1)[0].lower()) not in rows.get(extra, "")
    }
    assert unnamed == set()

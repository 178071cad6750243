"""`pip install .` ships sql/ and migrations/ inside the package: an installed copy can migrate."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert {
        "refproj/_sql/0003_projection.sql",
        "refproj/_sql/projection/10_refresh.sql",
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
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0004",)
        assert conn.execute("SELECT count(*) FROM refproj.connection_summaries()").fetchone() == (0,)


def test_product_does_not_import_the_benchmark() -> None:
    code = (
        "import sys, pkgutil, importlib, refproj;"
        " [importlib.import_module(m.name) for m in pkgutil.walk_packages(refproj.__path__, 'refproj.')];"
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

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

"""Where the SQL files and the Alembic migrations live.

In a source checkout they are the top-level ``sql/`` and ``migrations/`` folders; an installed
wheel carries them inside the package as ``refproj/_sql`` and ``refproj/_migrations``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"none of {', '.join(map(str, candidates))} exists")


def sql_dir() -> Path:
    return _first_existing(_PACKAGE / "_sql", _PACKAGE.parent / "sql")


def migrations_dir() -> Path:
    return _first_existing(_PACKAGE / "_migrations", _PACKAGE.parent / "migrations")


def read_sql(name: str) -> str:
    return (sql_dir() / name).read_text(encoding="utf-8")

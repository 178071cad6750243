"""Database URL resolution shared by Alembic, the CLI and ``Projection``."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/refproj_demo"


def database_url(url: str | URL | None = None) -> URL:
    """The SQLAlchemy URL for ``url``, else ``$DATABASE_URL``, else the local demo database.

    Plain ``postgresql://`` URLs (what people put in ``DATABASE_URL``) are mapped to the
    psycopg 3 driver.
    """
    raw = url if url is not None else os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    parsed = make_url(raw)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def libpq_url(url: str | URL | None = None) -> str:
    """The same database as a libpq connection string, for psycopg used directly."""
    return database_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

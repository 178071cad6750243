"""The shim's SQL, parsed from ``sql/queries.sql`` once at import."""

from __future__ import annotations

import re

from refproj._resources import read_sql

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# ``:name`` parameters (not ``::type`` casts), rewritten to psycopg's ``%(name)s``.
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def parse(source: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` sections into {NAME: sql}."""
    parts = _HEADER.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def to_psycopg(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (a literal ``%`` doubled)."""
    return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


# Sent on psycopg connections taken from the SQLAlchemy pool, not through SQLAlchemy's execute:
# an interrupted statement (a cancelled asyncio task) is then cancelled by psycopg on the server
# and the connection goes back to the pool, where SQLAlchemy would discard it.
QUERIES: dict[str, str] = {name: to_psycopg(sql) for name, sql in parse(read_sql("queries.sql")).items()}

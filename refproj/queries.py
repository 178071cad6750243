"""The shim's SQL, parsed from ``sql/queries.sql`` once at import."""

from __future__ import annotations

import re

from sqlalchemy import TextClause, text

from refproj._resources import read_sql

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(source: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` sections into {NAME: sql}."""
    parts = _HEADER.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES: dict[str, TextClause] = {name: text(sql) for name, sql in parse(read_sql("queries.sql")).items()}

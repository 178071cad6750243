"""Database URLs and connection settings shared by Alembic, the CLI and ``Projection``.

refproj's own connections work unchanged through a transaction-pooling PgBouncer: they send no
startup options (PgBouncer refuses ``options`` unless told to ignore it, and then the settings are
silently lost), use no server-side prepared statements (a pooled client gets a different server
session for every transaction), and set what they need per transaction (``set_config(...,
true)``), so nothing is left behind on a server session another client gets next.
"""

from __future__ import annotations

import math
import os
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from refproj.errors import InvalidDatabaseUrl, first_line, mask_secrets

# The application's tables refproj reads (revision 0001 creates those that do not exist yet).
SOURCE_TABLES = (
    "connectors",
    "connector_instances",
    "spine_events",
    "controller_active_runs",
    "retained_size_connection",
    "retained_size_stream",
)
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/refproj_demo"
"""The CLI's, Alembic's and ``make demo``'s default. The library has none: ``Projection()``
without a URL or ``DATABASE_URL`` raises :class:`InvalidDatabaseUrl`."""

# URL schemes refproj accepts; each maps to the psycopg 3 driver SQLAlchemy uses.
_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def database_url(url: str | URL | None = None, *, default: str | None = DEFAULT_DATABASE_URL) -> URL:
    """The SQLAlchemy URL for ``url``, else ``$DATABASE_URL``, else ``default``.

    Plain ``postgresql://`` URLs (what people put in ``DATABASE_URL``) are mapped to the
    psycopg 3 driver. Raises :class:`InvalidDatabaseUrl` when there is no URL at all (``default``
    None) or the URL is not a ``postgresql://`` URL.
    """
    raw = url if url is not None else os.environ.get("DATABASE_URL") or default
    if raw is None:
        raise InvalidDatabaseUrl(
            "no database given: pass a postgresql:// URL or an Engine, or set DATABASE_URL"
        )
    if isinstance(raw, str) and not is_utf8_text(raw):
        raise InvalidDatabaseUrl(
            "the database URL must be Unicode text without lone surrogates (U+D800-U+DFFF)"
        )
    if isinstance(raw, str):
        raw = _literal_plus(raw)
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError, TypeError) as error:
        shown = mask_secrets(raw) if isinstance(raw, str) else type(raw).__name__
        raise InvalidDatabaseUrl(f"not a database URL: {shown!r}") from error
    if parsed.drivername not in _SCHEMES:
        raise InvalidDatabaseUrl(
            f"unsupported database URL scheme {_short(parsed.drivername)!r}:"
            " refproj needs a postgresql:// URL (driver psycopg)"
        )
    _check_libpq(parsed.set(drivername="postgresql"))
    return parsed.set(drivername="postgresql+psycopg")


def _check_libpq(url: URL) -> None:
    """Refuse what libpq would refuse or misread, before any connection: a NUL (libpq's C strings
    end there, so ``dbname%00x`` would silently be ``dbname``), a port outside 1 to 65535, a
    parameter libpq does not know (its own parser says which). A known parameter's bad value
    (``sslmode=bogus``) is libpq's to find when it connects: see ``errors.translate``."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo

    text = url_text(url)
    shown = mask_secrets(text)
    if "%00" in text:  # url_text writes a NUL in any part as %00
        raise InvalidDatabaseUrl(f"the database URL must not contain NUL (%00): {shown!r}")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise InvalidDatabaseUrl(
            f"the database URL's port must be from 1 to 65535, not {url.port}: {shown!r}"
        )
    try:
        # psycopg reads ?connect_timeout itself (libpq would only when connecting): "abc" is
        # refused here, for every command alike.
        timeout_from_conninfo(conninfo_to_dict(text))
    except ProgrammingError as error:
        raise InvalidDatabaseUrl(
            f"not a database URL libpq reads ({first_line(error)}): {shown!r}"
        ) from error


def is_utf8_text(value: str) -> bool:
    """Whether ``value`` has a UTF-8 form: a lone surrogate ("\\ud800", what a failed decode
    leaves with surrogateescape) has none, and the driver would raise a bare UnicodeEncodeError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def libpq_url(url: str | URL | None = None) -> str:
    """The same database as a libpq connection string, for psycopg used directly."""
    return url_text(database_url(url).set(drivername="postgresql"))


def url_text(url: URL) -> str:
    """``url`` as text that libpq and :func:`database_url` both read back unchanged.

    SQLAlchemy renders query values with ``quote_plus`` (a space becomes "+"), but libpq decodes
    only %XX, so ``?options=-c%20lock_timeout%3D1000`` came back as ``-c+lock_timeout=1000``.
    Every URL refproj hands on as text goes through here: query values use %20 for a space.
    SQLAlchemy also leaves a space in the user, password and database name as is, and libpq
    refuses a URL with a space ("my%20secret" came back as "my secret"); so those parts are
    percent-encoded here, every character but unreserved ones, which also keeps a password
    within what ``mask_secrets`` recognises.
    """
    auth = ""
    if url.username is not None:
        auth = quote(url.username, safe="")
        if url.password is not None:
            auth += ":" + quote(str(url.password), safe="")
        auth += "@"
    scheme, _, address = (
        URL.create(url.drivername, host=url.host, port=url.port).render_as_string().partition("://")
    )
    base = f"{scheme}://{auth}{address}"
    if url.database is not None:
        base += "/" + quote(url.database, safe="")
    pairs = [
        f"{quote(key, safe='')}={quote(value, safe='')}"
        for key, values in url.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]
    return base + ("?" + "&".join(pairs) if pairs else "")


def _literal_plus(raw: str) -> str:
    """A "+" in the query is a plus sign to libpq (it decodes only %XX); SQLAlchemy would read it
    as a space, so it is spelled %2B before parsing."""
    head, mark, query = raw.partition("?")
    return head + mark + query.replace("+", "%2B") if mark else raw


def _short(text: str) -> str:
    text = text.splitlines()[0] if text else text
    return text if len(text) <= 80 else text[:77] + "..."


DEFAULT_CONNECT_TIMEOUT = 5
"""Seconds to connect, when neither the URL (``?connect_timeout=``) nor the caller says."""


def connect_args(connect_timeout: int, url: URL | str) -> dict[str, Any]:
    """psycopg connection arguments that are safe behind a transaction pooler, for ``url`` (a
    URL, or libpq text).

    ``prepare_threshold=None``: psycopg would otherwise prepare a statement on the server after
    its fifth execution, and the next transaction may run on a server session that never saw
    it (``prepared statement "_pg3_0" does not exist``). ``connect_timeout`` (seconds) only when
    the URL has no ``connect_timeout`` of its own: a keyword argument would silently override it.
    """
    from psycopg.conninfo import conninfo_to_dict

    given = url.query if isinstance(url, URL) else conninfo_to_dict(url)
    if "connect_timeout" in given:
        return {"prepare_threshold": None}
    return {"connect_timeout": int(connect_timeout), "prepare_threshold": None}


def session_settings(statement_timeout: float) -> dict[str, str]:
    """Parameters of ``session_settings`` (sql/queries.sql): the statement timeout in seconds.

    A read sends that statement and itself in one pipeline before a single Sync, so PostgreSQL
    runs both in one implicit transaction: the transaction-local settings apply to the read and
    end with it, in one round trip.
    """
    return {"statement_timeout": milliseconds(statement_timeout)}


def milliseconds(seconds: float) -> str:
    """A timeout in seconds as PostgreSQL's setting: whole milliseconds, "0" only for 0 (no limit).

    A positive value is rounded up to the next millisecond, never down: truncated, 0.0004 s would
    become 0 and mean no limit at all. (Rounded to a nanosecond first, so float noise such as
    1.1 * 1000 = 1100.0000000000002 does not add a millisecond.)
    """
    if seconds == 0:
        return "0"
    return str(max(1, math.ceil(round(seconds * 1000, 6))))

"""Errors a caller can cause or meet, each with a one-line message (the CLI prints it as is).

Every exception that leaves refproj's public API is a :class:`RefprojError`:

- :class:`InvalidArgument` (also a ``ValueError``): a value the caller passed cannot be used;
  :class:`InvalidIdentifier` (an id) and :class:`InvalidDatabaseUrl` (no database given, or a
  URL refproj cannot use) are its kinds;
- :class:`ConnectionNotFound`, :class:`AmbiguousConnection` (also ``LookupError``): a detail id
  that does not resolve to one connection;
- :class:`DatabaseUnavailable` (:class:`PoolExhausted`): the database cannot be reached;
- :class:`MigrationsNotApplied`, :class:`PermissionDenied`, :class:`StatementCanceled`,
  :class:`ReadOnlyServer` (a refresh sent to a standby or a read-only database);
- :class:`ProjectionClosed`: a call after ``close()``/``aclose()``;
- :class:`CannotListen`: ``refproj serve`` cannot bind its address (in use, not this machine's);
- :class:`DatabaseError`: anything else the database or the driver reported (a protocol
  violation, an unexpected SQL error), with the server's first line and its SQLSTATE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A password in a URL's userinfo (scheme://user:SECRET@host), and a password parameter in a URL's
# query or a libpq key=value string (password=SECRET, sslpassword='SE CRET'). A URL as typed may
# hold a space in its password ("u:my secret@h"), so only "@", "/" and a line end stop one.
_USERINFO_SECRET = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)[^@/\n]*@")
_PARAMETER_SECRET = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]*)")


def mask_secrets(text: str) -> str:
    """``text`` with every password of a database URL or conninfo string in it shown as ``***``.
    Every URL refproj shows (error messages, logs, the CLI) goes through here."""
    return _PARAMETER_SECRET.sub(r"\1***", _USERINFO_SECRET.sub(r"\1***@", text))


class RefprojError(Exception):
    """Base class of every error refproj raises."""


class ProjectionClosed(RefprojError):
    """The ``Projection``/``AsyncProjection`` was closed (``close()``/``aclose()``): make a new one.
    Its pools are gone; reopening them silently would leak what close() released."""


class InvalidArgument(RefprojError, ValueError):
    """An argument value refproj cannot use (out of range, wrong type); nothing was done."""


class InvalidIdentifier(InvalidArgument):
    """A connection or connector id that PostgreSQL text cannot hold or that is not an id at all."""


class InvalidDatabaseUrl(InvalidArgument):
    """No database was given (no URL and no ``DATABASE_URL``), or the URL is not a
    ``postgresql://`` URL refproj can use."""


class ConnectionNotFound(RefprojError, LookupError):
    """No visible connection has this id, and it is not a connector id with exactly one."""

    def __init__(self, connection: str) -> None:
        super().__init__(f"no connection {connection!r}")
        self.connection = connection


class AmbiguousConnection(RefprojError, LookupError):
    """A connector id was given and the connector has several visible connections.

    ``candidate_ids`` are their connection ids in overview order (``candidates`` is how many).
    """

    def __init__(self, connection: str, candidate_ids: Sequence[str]) -> None:
        ids = list(candidate_ids)
        shown = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
        super().__init__(
            f"{connection!r} is a connector with {len(ids)} connections; name one connection id: {shown}"
        )
        self.connection = connection
        self.candidate_ids = ids
        self.candidates = len(ids)


class DatabaseUnavailable(RefprojError):
    """The database cannot be reached (down, refusing connections, wrong address)."""


class PoolExhausted(DatabaseUnavailable):
    """No pooled connection became free within the pool timeout."""


class StatementCanceled(RefprojError):
    """The database canceled the statement: a statement or lock timeout, or an operator's cancel."""


class MigrationsNotApplied(RefprojError):
    """The database has no refproj schema (or an older one): run ``refproj migrate``."""


class PermissionDenied(RefprojError):
    """The database role lacks a privilege the operation needs (SQLSTATE 42501)."""


class ReadOnlyServer(RefprojError):
    """The server accepts no writes (a hot standby, ``default_transaction_read_only``, a
    read-only replica): refresh on the primary (SQLSTATE 25006)."""


class DatabaseError(RefprojError):
    """Any other error the database or the driver reported. ``sqlstate`` is its SQLSTATE code,
    or None when the driver raised it without one."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# libpq (and psycopg) refusing a connection parameter's value before connecting: `invalid sslmode
# value: "bogus"`, `invalid integer value "x" for connection option "port"`, `bad value for
# connect_timeout: 'x'`. The URL is wrong, not the network.
_BAD_OPTION_VALUE = re.compile(r"(?:connection is bad: )?(?:invalid \S+ (?:value|number)|bad value for )")

# SQLSTATEs meaning the refproj schema or one of its functions is missing or out of date.
_NOT_MIGRATED = frozenset({"3F000", "42883", "42P01", "42703"})


def translate(error: BaseException, where: str) -> RefprojError:
    """The RefprojError for an error of the driver (psycopg, or SQLAlchemy wrapping it) met while
    talking to the database at ``where`` (a URL without password). What the caller can do about
    it decides the class; the message is the server's first line."""
    from sqlalchemy import exc

    if isinstance(error, RefprojError):
        return error
    invalidated = False
    orig: BaseException = error
    if isinstance(error, exc.DBAPIError):
        invalidated = error.connection_invalidated
        orig = error.orig if error.orig is not None else error
    elif isinstance(error, exc.TimeoutError):
        # SQLAlchemy's text names its pool class and links its docs; say what it means here.
        seconds = re.search(r"timeout (\d+(?:\.\d+)?)", str(error))
        within = f"{float(seconds[1]):g} s" if seconds else "the pool timeout"
        return PoolExhausted(f"no database connection free within {within}; the pool is busy")
    sqlstate = getattr(orig, "sqlstate", None)
    line = mask_secrets(first_line(orig))  # a driver may echo the conninfo it could not parse
    if sqlstate in _NOT_MIGRATED:
        return MigrationsNotApplied(f"refproj is not installed in {where} ({line}): run `refproj migrate`")
    if sqlstate in ("57014", "55P03"):
        return StatementCanceled(f"the database canceled the statement: {line}")
    if sqlstate == "25006":
        return ReadOnlyServer(f"this server is read-only; refresh on the primary ({where}: {line})")
    if sqlstate == "42501":
        return PermissionDenied(f"{line} (connected to {where})")
    if sqlstate is None and _BAD_OPTION_VALUE.match(line):
        return InvalidDatabaseUrl(f"the database URL has a value libpq refuses ({line}): {where!r}")
    # 08P01 is a protocol violation: the server answered, so it is not "unreachable".
    lost = (
        invalidated
        or (sqlstate or "").startswith(("08", "57P"))
        or (sqlstate is None and _is_connection_failure(orig))
    )
    if lost and sqlstate != "08P01":
        return DatabaseUnavailable(f"database unreachable at {where}: {line}")
    shown = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return DatabaseError(f"the database reported an error{shown}: {line}", sqlstate)


def _is_connection_failure(error: BaseException) -> bool:
    import psycopg
    from sqlalchemy import exc

    return isinstance(
        error, psycopg.OperationalError | psycopg.InterfaceError | exc.OperationalError | exc.InterfaceError
    )


def first_line(error: BaseException | None) -> str:
    """The first line of an error's message (its type name when it has none); a server error's
    whole primary message, which may quote data with line breaks in it (a role name)."""
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    if primary:
        return str(primary)
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CannotListen(RefprojError):
    """The HTTP service cannot listen on its host and port: the address is in use, is not one of
    this machine's, or the port needs a privilege the process lacks."""


class ForeignObjectsInSchema(RefprojError):
    """Schema ``refproj`` holds an object refproj did not create, or an object elsewhere depends
    on one of refproj's (a view over ``refproj.connection_summary``): the migration would drop it
    with the schema, so it refused before changing anything. The message names them."""


class SourceTablesIncompatible(RefprojError):
    """An application's existing source table lacks a column refproj reads, or has it with a type
    refproj cannot read it as; the message names the table and column. Nothing was installed."""

"""Errors a caller can cause or meet, each with a one-line message (the CLI prints it as is)."""

from __future__ import annotations


class RefprojError(Exception):
    """Base class of every error refproj raises on purpose."""


class ConnectionNotFound(RefprojError, LookupError):
    """No visible connection has this id, and it is not a connector id with exactly one."""

    def __init__(self, connection: str) -> None:
        super().__init__(f"no connection {connection!r}")
        self.connection = connection


class AmbiguousConnection(RefprojError, LookupError):
    """A connector id was given and the connector has several visible connections."""

    def __init__(self, connection: str, candidates: int) -> None:
        super().__init__(
            f"{connection!r} is a connector with {candidates} connections; name one connection id"
        )
        self.connection = connection
        self.candidates = candidates


class InvalidIdentifier(RefprojError, ValueError):
    """A connection or connector id that PostgreSQL text cannot hold or that is not an id at all."""


class DatabaseUnavailable(RefprojError):
    """The database cannot be reached (down, refusing connections, wrong address)."""


class PoolExhausted(DatabaseUnavailable):
    """No pooled connection became free within the pool timeout."""


class StatementCanceled(RefprojError):
    """The database canceled the statement: a statement or lock timeout, or an operator's cancel."""


class MigrationsNotApplied(RefprojError):
    """The database has no refproj schema (or an older one): run ``refproj migrate``."""

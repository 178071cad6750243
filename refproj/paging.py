"""One page (or all) of the overview as the database serialised it, ready to be written out.

The HTTP service answers ``GET /_ref/connectors`` with ``OverviewPage.body``: the rows are the
JSON text ``refproj.connection_summaries_page`` built from the text stored at refresh, wrapped in
the envelope by concatenation, never parsed and serialised again.

Paging is by key, not offset: ``next_after`` is an opaque cursor holding the overview-order key
(connector_id, created_at, connector_instance_id) of the page's last row; the next page starts
after it, so connections added or removed in between shift nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson

from refproj._core import MAX_IDENTIFIER_BYTES, check_identifier, check_read_time
from refproj.errors import InvalidArgument

MAX_PAGE_LIMIT = 10_000
# A cursor holds a row's connector and connection ids (each up to MAX_IDENTIFIER_BYTES, a
# control character escaped in JSON as 6 bytes) and its created_at, in base64.
MAX_CURSOR_LENGTH = 4 * (2 * 6 * MAX_IDENTIFIER_BYTES + 100) // 3 + 4

PageKey = tuple[str, datetime, str]


def encode_cursor(key: list[Any]) -> str:
    """The cursor for the key ``[connector_id, created_at ISO, connector_instance_id]``."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: object) -> PageKey:
    """The key a cursor from ``encode_cursor`` holds; ``InvalidArgument`` for anything else."""
    problem = "is not a page cursor this service issued"
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidArgument(f"after {problem}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
        connector_id, created_at, connection = key
        if not all(isinstance(part, str) and part and "\x00" not in part for part in key):
            raise ValueError(problem)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError(problem)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as error:
        raise InvalidArgument(f"after {problem}") from error
    return connector_id, when, connection


def check_limit(limit: object) -> int | None:
    """A page's row count: None (every row) or a whole number from 1 to MAX_PAGE_LIMIT."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgument(f"limit must be a whole number, not {type(limit).__name__}")
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE_LIMIT}")
    return limit


def page_params(
    connector_id: str | None, at: datetime | None, limit: int | None, after: str | None
) -> dict[str, Any]:
    """The bound parameters of the ``overview_page`` query; ``InvalidArgument`` for bad input."""
    if connector_id is not None:
        check_identifier(connector_id, "connector id")
    key: tuple[Any, Any, Any] = decode_cursor(after) if after is not None else (None, None, None)
    return {
        "at": check_read_time(at),
        "connector_id": connector_id,
        "limit": check_limit(limit),
        "after_connector_id": key[0],
        "after_created_at": key[1],
        "after_connector_instance_id": key[2],
    }


def _utc_iso(value: str | None) -> str | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC).isoformat()


@dataclass(frozen=True, eq=False)
class OverviewPage:
    """An overview answer as bytes plus what says how current it is.

    ``connections_json``: the JSON array text of the rows (UTF-8), as the database serialised
    them. ``as_of``, ``valid_until`` (None: no served row changes freshness or health at any
    later read time) and ``next_after`` (None: last page) are ISO-8601 / cursor text.
    ``building``: the first build after install has not committed, nothing is stored yet.
    """

    as_of: str
    source_changed: bool
    valid_until: str | None
    connections_json: bytes
    row_count: int
    next_after: str | None
    request: tuple[str | None, int | None, str | None]  # (connector_id, limit, after)
    building: bool = False

    @classmethod
    def from_row(
        cls, row: Any, connector_id: str | None, limit: int | None, after: str | None
    ) -> OverviewPage:
        """From the ``overview_page`` query's (status, page, connections) row."""
        status, page, connections = row
        last_key = page["last_key"]
        return cls(
            as_of=_utc_iso(status["as_of"]) or "",
            source_changed=bool(status["source_changed"]),
            valid_until=_utc_iso(page["valid_until"]),
            # NULL while the first build after install runs.
            connections_json=b"[]" if connections is None else connections.encode("utf-8"),
            row_count=int(page["row_count"]),
            next_after=encode_cursor(last_key) if page["more"] and last_key is not None else None,
            request=(connector_id, limit, after),
            building=bool(status.get("building", False)),
        )

    @cached_property
    def body(self) -> bytes:
        """``{"as_of", "source_changed", "valid_until", "connections"[, "next_after"][, "building"]}``
        as bytes (``next_after`` only when a limit was asked for, ``building`` only while the first
        build after install runs)."""
        head = orjson.dumps(
            {"as_of": self.as_of, "source_changed": self.source_changed, "valid_until": self.valid_until}
        )
        tail = b',"building":true}' if self.building else b"}"
        if self.request[1] is not None or self.request[2] is not None:
            tail = b',"next_after":' + orjson.dumps(self.next_after) + tail
        return head[:-1] + b',"connections":' + self.connections_json + tail

    @cached_property
    def etag(self) -> str:
        """A strong entity tag that changes exactly when ``body`` does.

        Within one refresh (one ``as_of``: every refresh that runs sets a new one, in the same
        transaction as the rows) the rows are fixed and each row's freshness and health flip
        once, just after its ``fresh_until``; ``valid_until`` is the first such flip at or after
        the read time, so it tells which ending every served row has. The body is therefore a
        function of (as_of, source_changed, valid_until, the request's connector, limit and
        cursor), and those are what is hashed: equal inputs give equal bytes, and any change of
        the bytes changes one of them. No need to hash the body itself.
        """
        identity = orjson.dumps(
            [
                self.as_of,
                self.source_changed,
                self.valid_until,
                *self.request,
                *([True] if self.building else []),
            ]
        )
        return '"' + hashlib.blake2b(identity, digest_size=16).hexdigest() + '"'

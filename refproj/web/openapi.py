"""The OpenAPI 3.1 document of the HTTP service, built once from the typed rows.

The row schemas come from the same ``TypedDict``s the projection's answers are declared with
(``refproj.rows``), so the document cannot drift from what the service returns; the envelopes
and errors, which exist only over HTTP, are declared here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from refproj._core import MAX_IDENTIFIER_BYTES
from refproj.paging import MAX_CURSOR_LENGTH

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _row_schemas() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from refproj.rows import ROW_TYPES

    schemas: dict[str, Any] = {}
    for name, kind in ROW_TYPES.items():
        schema = TypeAdapter(kind).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


_TIME = {"type": "string", "format": "date-time"}
_ERROR_CODES = [
    "not_found",
    "ambiguous",
    "invalid",
    "unauthorized",
    "method_not_allowed",
    "not_migrated",
    "permission_denied",
    "read_only",
    "busy",
    "unavailable",
    "timeout",
    "internal",
]

_HTTP_SCHEMAS: dict[str, Any] = {
    "OverviewEnvelope": {
        "type": "object",
        "required": ["as_of", "source_changed", "valid_until", "connections"],
        "additionalProperties": False,
        "properties": {
            "as_of": {**_TIME, "description": "When the stored evidence was computed (the last refresh)."},
            "source_changed": {"type": "boolean", "description": "A source table was written since as_of."},
            "valid_until": {
                "anyOf": [_TIME, {"type": "null"}],
                "description": "The last read time for which these rows' freshness and health hold;"
                " null: no served row changes at any later time. A refresh may change them sooner.",
            },
            "connections": {"type": "array", "items": _ref("OverviewRow")},
            "building": {
                "type": "boolean",
                "description": "Only while the first build after install runs (always true then):"
                " connections is empty because nothing is stored yet, not because there are none.",
            },
            "next_after": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "Only when limit or after was given: the after= cursor of the next"
                " page, null on the last page.",
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "enum": _ERROR_CODES},
            "message": {"type": "string"},
            "candidates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "ambiguous only: the connection ids the connector id could mean.",
            },
        },
    },
    "RefreshResult": {
        "type": "object",
        "required": ["refreshed", "as_of", "refresh_ms"],
        "additionalProperties": False,
        "properties": {
            "refreshed": {"type": "boolean", "description": "This call ran the refresh (false: shared one)."},
            "as_of": _TIME,
            "refresh_ms": {"type": "number"},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status", "as_of", "source_changed"],
        "additionalProperties": False,
        "properties": {
            "status": {"const": "ready"},
            "as_of": _TIME,
            "source_changed": {"type": "boolean"},
        },
    },
    "Alive": {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "properties": {"status": {"const": "ok"}},
    },
}


def _json(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int, also: dict[int, str] | None = None) -> dict[str, Any]:
    """The error responses ``codes``; ``also`` adds a route's own cases to a code's text."""
    text = {
        401: "Missing or wrong bearer token (only when REFPROJ_API_TOKEN is set).",
        404: "No such connection.",
        409: "A connector id with several connections: error ambiguous, candidates lists them.",
        422: "Invalid input (a parameter out of its bounds, a malformed time or cursor).",
        503: "The database is unreachable (down, or its URL refused) or not migrated, or no"
        " connection is free in time.",
        504: "The statement hit its timeout.",
    }
    also = also or {}
    return {str(code): _json("Error", f"{text[code]} {also.get(code, '')}".rstrip()) for code in codes}


_CONNECTOR_ID = {
    "name": "connector_id",
    "in": "query",
    "required": False,
    "description": "Only this connector's connections.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDENTIFIER_BYTES},
}
_AT = {
    "name": "at",
    "in": "query",
    "required": False,
    "description": "Read time for freshness and health (ISO-8601 with offset); default now.",
    "schema": {"type": "string", "format": "date-time"},
}
_ETAG = {"ETag": {"description": "Strong entity tag of the body.", "schema": {"type": "string"}}}


@cache
def openapi_document() -> bytes:
    """The document as JSON bytes (built on first use; pydantic is imported only then)."""
    schemas = {**_row_schemas(), **_HTTP_SCHEMAS}
    paths: dict[str, Any] = {
        "/_ref/connectors": {
            "get": {
                "operationId": "listConnections",
                "summary": "The overview: every visible connection, from the stored evidence.",
                "parameters": [
                    _CONNECTOR_ID,
                    _AT,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Page size (keyset paging in overview order); default: all.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The next_after cursor of the previous page, as issued:"
                        " opaque (format refproj-cursor: base64url without padding of the JSON array"
                        " [connector_id, created_at, connector_instance_id] of the page's last row,"
                        " hence its WyJ prefix). Any other text is 422.",
                        "schema": {
                            "type": "string",
                            "format": "refproj-cursor",
                            "pattern": "^WyJ[A-Za-z0-9_-]+$",
                            "maxLength": MAX_CURSOR_LENGTH,
                        },
                    },
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "An ETag this service returned: 304 while the body is unchanged.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json("OverviewEnvelope", "The overview.", _ETAG),
                    "304": {
                        "description": "Not modified: the body for If-None-Match is current.",
                        "headers": _ETAG,
                    },
                    **_errors(401, 422, 503, 504),
                },
            }
        },
        "/_ref/connectors/{connection}": {
            "get": {
                "operationId": "getConnection",
                "summary": "The live detail of one connection (by connection id, or by a connector id"
                " with exactly one connection).",
                "parameters": [
                    {
                        "name": "connection",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDENTIFIER_BYTES},
                    },
                    {
                        "name": "runs",
                        "in": "query",
                        "required": False,
                        "description": "How many recent runs (0-100, default 20).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                    _AT,
                ],
                "responses": {
                    "200": _json("Detail", "The detail."),
                    **_errors(401, 404, 409, 422, 503, 504),
                },
            }
        },
        "/_ref/connectors/refresh": {
            "post": {
                "operationId": "refresh",
                "summary": "Read-your-writes refresh: returns once the overview reflects earlier commits.",
                "responses": {
                    "200": _json("RefreshResult", "The refresh that covered this call."),
                    **_errors(401, 503, 504, also={503: "read_only: it accepts no writes (a hot standby)."}),
                },
            }
        },
        "/_ref/connectors/events": {
            "get": {
                "operationId": "events",
                "summary": "Server-Sent Events: event refreshed (id and data.as_of: the new as_of) after"
                " each refresh; comment heartbeats; Last-Event-ID honoured.",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "The last as_of seen: an event follows at once if it is not current.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "An event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive (no token needed).",
                "responses": {"200": _json("Alive", "Alive.")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "The database is reachable and migrated.",
                "responses": {"200": _json("Ready", "Ready."), **_errors(401, 503, 504)},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (refproj_*).",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 503, 504),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "required": ["openapi", "paths"]}
                            }
                        },
                    },
                    **_errors(401),
                },
            }
        },
    }
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "refproj console API",
            "version": "1",
            "description": "Connection summaries of a personal-data server, served by refproj.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
    return orjson.dumps(document)

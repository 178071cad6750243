"""A small language for writing scenario data into the source tables.

Times are written as "HH:MM" on one fixed day (UTC) so assertions can name them exactly.
Rows are read back through the SQL functions as JSON (``to_jsonb``), exactly as the Python shim
serves them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import event

DAY = "2026-01-05"


def at(hhmm: str) -> datetime:
    """'12:01' -> 2026-01-05 12:01:00+00:00; a full ISO timestamp is taken as is."""
    if len(hhmm) <= 5:
        return datetime.fromisoformat(f"{DAY}T{hhmm}:00+00:00")
    return datetime.fromisoformat(hhmm)


def iso(hhmm: str) -> str:
    """The ISO text PostgreSQL's to_jsonb gives for at(hhmm) in UTC."""
    return at(hhmm).astimezone(UTC).isoformat()


def overview_forms(
    db: psycopg.Connection[Any], when: datetime | None, connector_id: str | None = None
) -> tuple[list[Any], list[Any]]:
    """The overview at ``when`` (default now()) twice, in one snapshot and at one clock: the rows
    of refproj.connection_summaries() as to_jsonb, and refproj.connection_summaries_json() parsed.

    The typed columns are put in the served form first (README): max_staleness in seconds, and
    timestamps an ISO-8601 parser cannot read as null."""
    row = db.execute(
        "SELECT (SELECT COALESCE(jsonb_agg(to_jsonb(s) - 'ordinality' || jsonb_build_object("
        "               'max_staleness', extract(epoch FROM s.max_staleness),"
        "               'created_at', refproj.json_time(s.created_at),"
        "               'revoked_at', refproj.json_time(s.revoked_at)) ORDER BY s.ordinality), '[]')"
        "        FROM refproj.connection_summaries(read.at, %(connector)s) WITH ORDINALITY AS s),"
        "       refproj.connection_summaries_json(read.at, %(connector)s)"
        " FROM (SELECT COALESCE(%(at)s, now()) AS at) AS read",
        {"at": when, "connector": connector_id},
    ).fetchone()
    assert row is not None
    return row[0], json.loads(row[1])


class World:
    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db

    # -- source rows -----------------------------------------------------------------------------

    def connector(
        self, connector_id: str = "acme", *, display_name: str | None = None, manifest: Any = None
    ) -> None:
        self.db.execute(
            "INSERT INTO connectors (connector_id, display_name, manifest) VALUES (%s, %s, %s)",
            (connector_id, display_name, Jsonb(manifest if manifest is not None else {})),
        )

    def connection(
        self,
        connection_id: str,
        connector_id: str = "acme",
        *,
        status: str = "active",
        source_kind: str = "account",
        source_binding: Any = None,
        created: str = "09:00",
        display_name: str | None = None,
        revoked: str | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO connector_instances (connector_instance_id, connector_id, display_name, status,"
            " source_kind, source_binding, created_at, updated_at, revoked_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                connection_id,
                connector_id,
                display_name,
                status,
                source_kind,
                Jsonb(source_binding if source_binding is not None else {}),
                at(created),
                at(created),
                at(revoked) if revoked else None,
            ),
        )

    def siblings(self) -> None:
        """The default world of SCENARIOS.md: connector acme, active cin_work (older) and cin_personal."""
        self.connector("acme")
        self.connection("cin_work", created="09:00")
        self.connection("cin_personal", created="09:05")

    def event(
        self,
        run_id: str | None,
        event_type: str,
        when: str,
        *,
        status: str = "ok",
        connector: str | None = "acme",
        identity: str | None = None,
        data: Any = None,
        source_kind: str | None = "connector",
    ) -> int:
        row = self.db.execute(
            "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
            " connector_instance_id, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING event_seq",
            (
                event_type,
                at(when),
                status,
                source_kind,
                connector,
                run_id,
                identity,
                Jsonb(data if data is not None else {}),
            ),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def surface_failure(
        self,
        run_id: str,
        when: str,
        profile_key: str | None,
        *,
        wait_reason: str | None = None,
        surface_status: str | None = None,
        connector: str = "acme",
        identity: str | None = None,
    ) -> int:
        surface: dict[str, Any] = {}
        if profile_key is not None:
            surface["browser_surface_profile_key"] = profile_key
        if wait_reason is not None:
            surface["browser_surface_wait_reason"] = wait_reason
        if surface_status is not None:
            surface["browser_surface_status"] = surface_status
        return self.event(
            run_id,
            "run.browser_surface_failed",
            when,
            status="surface_failed",
            connector=connector,
            identity=identity,
            data={"browser_surface": surface},
        )

    def succeeded_run(
        self, run_id: str, identity: str, start: str, end: str, *, connector: str = "acme", data: Any = None
    ) -> None:
        self.finished_run(run_id, identity, start, end, "run.completed", "succeeded", connector, data)

    def failed_run(
        self, run_id: str, identity: str, start: str, end: str, reason: str, *, connector: str = "acme"
    ) -> None:
        self.finished_run(run_id, identity, start, end, "run.failed", "failed", connector, {"reason": reason})

    def finished_run(
        self,
        run_id: str,
        identity: str,
        start: str,
        end: str,
        event_type: str,
        status: str,
        connector: str,
        data: Any,
    ) -> None:
        """run.started at ``start``, then the terminal ``event_type`` with ``status`` at ``end``."""
        self.event(run_id, "run.started", start, identity=identity, connector=connector)
        self.event(run_id, event_type, end, status=status, identity=identity, connector=connector, data=data)

    def active_run(self, connection_id: str, run_id: str, started: str, connector_id: str = "acme") -> None:
        self.db.execute(
            "INSERT INTO controller_active_runs (connector_instance_id, connector_id, run_id, started_at)"
            " VALUES (%s, %s, %s, %s)",
            (connection_id, connector_id, run_id, at(started)),
        )

    # -- reading back ----------------------------------------------------------------------------

    def refresh(self) -> bool:
        row = self.db.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone()
        assert row is not None
        return bool(row[0])

    def overview(self, when: str | None = None, connector_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Overview rows by connection id, in the order the function returned them.

        Every read also checks that the JSON text the shim serves
        (refproj.connection_summaries_json) holds exactly the same rows in the same order."""
        rows, served = overview_forms(self.db, at(when) if when else None, connector_id)
        assert served == rows
        return {row["connector_instance_id"]: row for row in rows}

    def overview_ids(self, connector_id: str | None = None) -> list[str]:
        return list(self.overview(connector_id=connector_id))

    def detail(self, connection: str, when: str | None = None, run_limit: int = 20) -> dict[str, Any] | None:
        """The detail as served (refproj.connection_detail_json, what Projection.get() parses)."""
        row = self.db.execute(
            "SELECT refproj.connection_detail_json(%s, %s, COALESCE(%s, now()))",
            (connection, run_limit, at(when) if when else None),
        ).fetchone()
        assert row is not None
        return None if row[0] is None else dict(json.loads(row[0]))

    def evidence(self, connection_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT to_jsonb(e) FROM refproj.connection_run_evidence(%s) AS e", (connection_id,)
        ).fetchone()
        assert row is not None
        return dict(row[0])

    def runs(self, connector_id: str = "acme") -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT to_jsonb(r) FROM refproj.run_summaries AS r WHERE r.connector_id = %s"
            " ORDER BY r.run_id, r.connector_instance_id NULLS FIRST",
            (connector_id,),
        ).fetchall()
        return [dict(row[0]) for row in rows]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def listening_sessions(db: psycopg.Connection[Any]) -> list[int]:
    """The pids of other sessions of this database that are idle after the watcher's LISTEN."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state = 'idle'"
        " AND query LIKE '%LISTEN refproj_source_changed; LISTEN refproj_refreshed;' ORDER BY pid"
    ).fetchall()
    return [int(row[0]) for row in rows]


def backends_waiting(
    db: psycopg.Connection[Any], wait_event_type: str, query_like: str, wait_event: str | None = None
) -> int:
    """Other sessions of this database waiting on a lock of that type, running a matching query."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND wait_event_type = %s AND query LIKE %s AND (%s::text IS NULL OR wait_event = %s)",
        (wait_event_type, query_like, wait_event, wait_event),
    ).fetchone()
    assert row is not None
    return int(row[0])


class StatementLog:
    """Every statement a (sync or async) Projection's connections send, as psycopg sends them.

    refproj runs its SQL on the psycopg connections of its engine's pool, so the log is a cursor
    class installed on each connection as the pool opens it: create the log before the first
    call opens a connection.
    """

    def __init__(self, engine: Any) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        log = self

        class LoggedCursor(psycopg.Cursor[Any]):
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                log._record(query)
                return super().execute(query, *args, **kwargs)

        class LoggedAsyncCursor(psycopg.AsyncCursor[Any]):
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                log._record(query)
                return await super().execute(query, *args, **kwargs)

        def install(dbapi_connection: Any, record: Any) -> None:
            pg = getattr(dbapi_connection, "driver_connection", dbapi_connection)
            pg.cursor_factory = LoggedAsyncCursor if isinstance(pg, psycopg.AsyncConnection) else LoggedCursor

        event.listen(getattr(engine, "sync_engine", engine), "connect", install)

    def _record(self, statement: Any) -> None:
        with self._lock:
            self.statements.append(str(statement))

    def count(self, mark: str) -> int:
        with self._lock:
            return sum(mark in statement for statement in self.statements)

"""NOTIFY refproj_source_changed from the source tables' statement triggers: once per writing
transaction, at commit, never for a rollback, also under session_replication_role = replica."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.world import World, at

CHANNEL = "refproj_source_changed"


def listener(db_url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(db_url, autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def drain(conn: psycopg.Connection[Any]) -> list[str]:
    """Every notification delivered so far (a round trip makes the client read what is queued)."""
    conn.execute("SELECT 1")
    return [note.channel for note in conn.notifies(timeout=0.2, stop_after=None)]


def test_one_notification_per_writing_transaction_at_commit(db: psycopg.Connection[Any], db_url: str) -> None:
    world = World(db)
    watcher = listener(db_url)
    try:
        writer = psycopg.connect(db_url)
        with writer.transaction():
            writer.execute("INSERT INTO connectors (connector_id, manifest) VALUES ('acme', '{}')")
            for minute in range(10):
                writer.execute(
                    "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id,"
                    " run_id) VALUES ('run.started', %s, 'ok', 'connector', 'acme', %s)",
                    (at(f"10:{minute:02d}"), f"run_{minute}"),
                )
            # Not committed yet: nothing delivered.
            assert drain(watcher) == []
        assert drain(watcher) == [CHANNEL]

        with writer.transaction(force_rollback=True):
            writer.execute("DELETE FROM spine_events")
        assert drain(watcher) == []

        # Every source table notifies, in autocommit statements too.
        world.connection("cin_work")
        world.event("run_a", "run.started", "11:00", identity="cin_work")
        world.active_run("cin_work", "run_a", "11:00")
        db.execute(
            "INSERT INTO retained_size_connection (connector_instance_id, connector_id)"
            " VALUES ('cin_work', 'acme')"
        )
        db.execute("TRUNCATE controller_active_runs")
        assert drain(watcher) == [CHANNEL] * 5
        writer.close()
    finally:
        watcher.close()


def test_writes_under_the_replica_role_notify_too(db: psycopg.Connection[Any], db_url: str) -> None:
    World(db).connector()
    watcher = listener(db_url)
    try:
        db.execute("SET session_replication_role = replica")
        db.execute(
            "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id)"
            " VALUES ('run.started', now(), 'ok', 'connector', 'acme', 'run_r')"
        )
        db.execute("RESET session_replication_role")
        assert drain(watcher) == [CHANNEL]
    finally:
        watcher.close()

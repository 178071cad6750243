"""Incremental maintenance equals a rebuild from scratch.

Each refresh recomputes only the runs recorded in refproj.dirty_runs. After every change below,
the maintained refproj.run_facts must equal refproj.run_facts_live (everything recomputed from
the source tables) and the stored overview must equal the live evidence of every connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.world import World

FACT_COLUMNS = (
    "connector_id, run_id, connector_instance_id, match_token, status, last_at, last_event_seq, brief"
)


def assert_incremental_equals_rebuild(db: psycopg.Connection[Any]) -> None:
    assert db.execute("SELECT * FROM refproj.refresh_connection_summary()").fetchone()[0] is True
    maintained = db.execute(
        f"SELECT {FACT_COLUMNS} FROM refproj.run_facts ORDER BY 1, 2, 3 NULLS FIRST"
    ).fetchall()
    rebuilt = db.execute(
        f"SELECT {FACT_COLUMNS} FROM refproj.run_facts_live ORDER BY 1, 2, 3 NULLS FIRST"
    ).fetchall()
    assert maintained == rebuilt
    stored = db.execute(
        "SELECT to_jsonb(s) FROM refproj.connection_summary AS s ORDER BY connector_instance_id"
    ).fetchall()
    live = db.execute(
        "SELECT to_jsonb(e) FROM refproj.connection_evidence AS e ORDER BY connector_instance_id"
    ).fetchall()
    assert stored == live
    assert db.execute("SELECT count(*) FROM refproj.dirty_runs").fetchone() == (0,)


def last_run_id(db: psycopg.Connection[Any], connection: str) -> str | None:
    row = db.execute(
        "SELECT last_run ->> 'run_id' FROM refproj.connection_summaries() WHERE connector_instance_id = %s",
        (connection,),
    ).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    w.succeeded_run("run_a", "cin_work", "10:00", "10:05")
    w.failed_run("run_b", "cin_personal", "10:10", "10:12", "connector_exit")
    assert_incremental_equals_rebuild(db)
    return w


def test_refresh_recomputes_only_changed_runs(world: World) -> None:
    world.event("run_c", "run.started", "11:00", identity="cin_work")
    assert world.db.execute("SELECT connector_id, run_id FROM refproj.dirty_runs").fetchall() == [
        ("acme", "run_c")
    ]
    assert_incremental_equals_rebuild(world.db)
    assert last_run_id(world.db, "cin_work") == "run_c"


def test_events_arriving_out_of_order(world: World) -> None:
    # The terminal event is written before the start, and a late event carries an earlier time.
    world.event("run_c", "run.completed", "11:30", status="succeeded", identity="cin_work")
    assert_incremental_equals_rebuild(world.db)
    world.event("run_c", "run.started", "11:00", identity="cin_work")
    world.event("run_c", "run.progress_reported", "09:00", identity="cin_work")
    assert_incremental_equals_rebuild(world.db)
    run = world.detail("cin_work")["last_run"]
    assert (run["run_id"], run["status"], run["event_count"]) == ("run_c", "succeeded", 3)
    assert run["started_at"] == "2026-01-05T09:00:00+00:00"


def test_late_committing_transaction_is_not_missed(world: World, db_url: str) -> None:
    late = psycopg.connect(db_url)
    World(late).event(
        "run_late", "run.failed", "12:00", status="failed", identity="cin_work", data={"reason": "late"}
    )
    # A refresh runs while that transaction is still open: it cannot see the run yet.
    assert_incremental_equals_rebuild(world.db)
    assert last_run_id(world.db, "cin_work") == "run_a"
    late.commit()
    late.close()
    assert world.db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (True,)
    assert_incremental_equals_rebuild(world.db)
    assert last_run_id(world.db, "cin_work") == "run_late"


def test_updates_and_deletes_of_events(world: World) -> None:
    db = world.db
    # Turn run_a's completion into a failure, then move it to another run id, then delete it.
    db.execute(
        "UPDATE spine_events SET status = 'failed', event_type = 'run.failed' WHERE run_id = 'run_a'"
        " AND event_type = 'run.completed'"
    )
    assert_incremental_equals_rebuild(db)
    assert world.overview()["cin_work"]["last_run"]["status"] == "failed"
    db.execute(
        "UPDATE spine_events SET run_id = 'run_moved' WHERE run_id = 'run_a' AND event_type = 'run.failed'"
    )
    assert_incremental_equals_rebuild(db)
    assert last_run_id(db, "cin_work") == "run_moved"
    db.execute("DELETE FROM spine_events WHERE run_id = 'run_moved'")
    assert_incremental_equals_rebuild(db)
    assert world.overview()["cin_work"]["last_run"]["status"] == "failed"  # run_a: orphaned start
    assert world.overview()["cin_work"]["last_run"]["failure_reason"] == "orphaned_started_run"
    db.execute("DELETE FROM spine_events WHERE run_id = 'run_a'")
    assert_incremental_equals_rebuild(db)
    assert last_run_id(db, "cin_work") is None


def test_run_id_reused_by_two_identities(world: World) -> None:
    world.succeeded_run("run_x", "cin_work", "11:00", "11:05")
    assert_incremental_equals_rebuild(world.db)
    world.failed_run("run_x", "cin_personal", "11:10", "11:15", "quota")
    # An identity-less event of that run id now has two candidates and must be ignored.
    world.event("run_x", "run.progress_reported", "11:20")
    assert_incremental_equals_rebuild(world.db)
    overview = world.overview()
    assert (overview["cin_work"]["last_run"]["run_id"], overview["cin_work"]["last_run"]["status"]) == (
        "run_x",
        "succeeded",
    )
    assert (
        overview["cin_personal"]["last_run"]["run_id"],
        overview["cin_personal"]["last_run"]["status"],
    ) == ("run_x", "failed")
    assert overview["cin_work"]["last_run"]["event_count"] == 2


def test_active_run_rows_change_run_status(world: World) -> None:
    world.event("run_live", "run.started", "11:00", identity="cin_work")
    world.active_run("cin_work", "run_live", "11:00")
    assert_incremental_equals_rebuild(world.db)
    assert world.overview()["cin_work"]["last_run"]["status"] == "in_progress"
    world.db.execute("DELETE FROM controller_active_runs")
    assert_incremental_equals_rebuild(world.db)
    assert world.overview()["cin_work"]["last_run"]["status"] == "failed"


def test_connection_changes_reattribute_without_run_changes(world: World) -> None:
    world.event("run_legacy", "run.completed", "12:00", status="succeeded", identity=None)
    assert_incremental_equals_rebuild(world.db)
    assert last_run_id(world.db, "cin_work") == "run_a"
    world.db.execute(
        "UPDATE connector_instances SET status = 'paused' WHERE connector_instance_id = 'cin_personal'"
    )
    assert_incremental_equals_rebuild(world.db)
    assert last_run_id(world.db, "cin_work") == "run_legacy"


def test_truncate_rebuilds(world: World) -> None:
    world.db.execute("TRUNCATE spine_events")
    pending = "SELECT rebuild_requests - rebuild_done FROM refproj.projection_state"
    assert world.db.execute(pending).fetchone() == (1,)
    assert world.db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (True,)
    assert_incremental_equals_rebuild(world.db)
    assert world.db.execute(pending).fetchone() == (0,)
    assert world.db.execute("SELECT count(*) FROM refproj.run_facts").fetchone() == (0,)


def test_large_backlog_rebuilds_whole(world: World) -> None:
    world.db.execute(
        "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
        " connector_instance_id) SELECT 'run.completed',"
        " timestamptz '2026-01-05 08:00+00' + i * interval '1 s', 'succeeded', 'connector', 'acme',"
        " 'bulk_' || i, 'cin_personal' FROM generate_series(1, 1500) AS i"
    )
    assert world.db.execute("SELECT count(*) FROM refproj.dirty_runs").fetchone() == (1500,)
    assert_incremental_equals_rebuild(world.db)
    assert world.db.execute("SELECT count(*) FROM refproj.run_facts").fetchone() == (1502,)


def test_non_run_spine_write_counts_as_a_change(world: World) -> None:
    world.event(None, "owner.logged_in", "12:00", connector=None, source_kind="owner")
    assert world.db.execute("SELECT connector_id, run_id FROM refproj.dirty_runs").fetchall() == [
        (None, None)
    ]
    assert world.db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (True,)
    assert_incremental_equals_rebuild(world.db)


# -- the planner keeps using the intended indexes (a regression here would only show as slowness) ----


def plan(db: psycopg.Connection[Any], sql: str, *params: Any) -> str:
    db.execute("SET enable_seqscan = off")
    rows = db.execute("EXPLAIN " + sql, params).fetchall()
    db.execute("RESET enable_seqscan")
    return "\n".join(row[0] for row in rows)


def test_run_recompute_uses_the_source_run_summary_index(world: World) -> None:
    text = plan(
        world.db,
        "SELECT * FROM refproj.run_facts_live WHERE connector_id = %s AND run_id = %s",
        "acme",
        "run_a",
    )
    assert "spine_events_source_run_summary_idx" in text
    assert "Seq Scan on spine_events" not in text


def test_detail_pushes_the_connector_filter_down_to_the_index(world: World) -> None:
    text = plan(world.db, "SELECT * FROM refproj.connection_run_rollup WHERE connector_id = %s", "acme")
    assert "spine_events_source_run_summary_idx" in text
    assert "Seq Scan on spine_events" not in text


def test_stored_evidence_probes_run_facts_indexes(world: World) -> None:
    latest = plan(
        world.db,
        "SELECT brief FROM refproj.run_facts WHERE connector_id = %s AND match_token = %s"
        " ORDER BY last_at DESC, last_event_seq DESC LIMIT 1",
        "acme",
        "id:cin_work",
    )
    assert "run_facts_latest_idx" in latest
    assert "Sort" not in latest
    success = plan(
        world.db,
        "SELECT brief FROM refproj.run_facts WHERE connector_id = %s AND match_token = %s"
        " AND status = 'succeeded' ORDER BY last_at DESC, last_event_seq DESC LIMIT 1",
        "acme",
        "id:cin_work",
    )
    assert "run_facts_latest_success_idx" in success


# -- the detail is live: it equals the from-scratch views whether or not a refresh ran ------------


def assert_detail_matches_live_views(db: psycopg.Connection[Any], connection: str) -> None:
    detail = db.execute(
        "SELECT to_jsonb(d) FROM refproj.connection_detail(%s, 1000) AS d", (connection,)
    ).fetchone()[0]
    live = db.execute(
        "SELECT to_jsonb(e) FROM refproj.connection_evidence AS e WHERE connector_instance_id = %s",
        (connection,),
    ).fetchone()[0]
    assert {key: detail[key] for key in live} == live
    runs = db.execute(
        "SELECT run_id, status, event_count, known_gaps, records_emitted FROM refproj.attributed_runs"
        " WHERE attributed_to = %s ORDER BY last_at DESC, last_event_seq DESC",
        (connection,),
    ).fetchall()
    assert [
        (r["run_id"], r["status"], r["event_count"], r["known_gaps"], r["records_emitted"])
        for r in detail["recent_runs"]
    ] == [tuple(run) for run in runs]
    unattributed = db.execute(
        "SELECT count(*) FROM refproj.attributed_runs WHERE connector_id = %s AND attributed_to IS NULL",
        (detail["connector_id"],),
    ).fetchone()[0]
    assert detail["unattributed_runs"] == unattributed


def test_detail_is_live_before_and_after_refresh(world: World) -> None:
    world.event("run_c", "run.started", "11:00", identity="cin_work")
    world.event(
        "run_c",
        "run.completed",
        "11:30",
        status="succeeded",
        identity="cin_work",
        data={"known_gaps": ["inbox"], "records_emitted": 12},
    )
    world.event("run_legacy", "run.failed", "11:40", status="failed", identity=None, data={"reason": "x"})
    world.db.execute(
        "UPDATE spine_events SET status = 'cancelled', event_type = 'run.cancelled'"
        " WHERE run_id = 'run_b' AND event_type = 'run.failed'"
    )
    for connection in ("cin_work", "cin_personal"):
        assert_detail_matches_live_views(world.db, connection)  # changes not yet refreshed
    detail = world.detail("cin_work")
    assert detail["last_run"]["run_id"] == "run_c"
    assert detail["recent_runs"][0]["known_gaps"] == ["inbox"]
    assert detail["unattributed_runs"] == 1
    assert_incremental_equals_rebuild(world.db)
    for connection in ("cin_work", "cin_personal"):
        assert_detail_matches_live_views(world.db, connection)
    assert world.detail("cin_work") == detail
    world.db.execute("TRUNCATE spine_events")  # a pending rebuild: the detail reads everything live
    assert_detail_matches_live_views(world.db, "cin_work")
    assert world.detail("cin_work")["last_run"] is None

"""SCENARIOS.md 1-18 through the SQL functions, plus write detection, refresh bookkeeping and order.

Every test writes source rows with tests/world.py, refreshes where the overview is read, and reads
back the overview (refproj.connection_summaries), the live detail (refproj.connection_detail), the
live run evidence (refproj.connection_run_evidence) and the run summaries as JSON dicts.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.world import World, at, backends_waiting, iso, wait_for

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def brief(
    run_id: str,
    status: str,
    start: str,
    last: str,
    *,
    reason: str | None = None,
    events: int = 1,
    key: str | None = None,
    finished: bool = True,
) -> dict[str, Any]:
    """The run object of last_run / last_successful_run (DOMAIN.md section 5)."""
    return {
        "run_id": run_id,
        "status": status,
        "started_at": iso(start),
        "last_at": iso(last),
        "finished_at": iso(last) if finished else None,
        "failure_reason": reason,
        "event_count": events,
        "browser_surface_profile_key": key,
    }


NO_EVIDENCE = {"last_run": None, "last_successful_run": None, "failures_since_last_success": 0}


def status(db: psycopg.Connection[Any]) -> dict[str, Any]:
    row = db.execute(
        "SELECT as_of, source_changed, last_refresh_ms, refresh_count FROM refproj.projection_status()"
    ).fetchone()
    assert row is not None
    return {"as_of": row[0], "source_changed": row[1], "last_refresh_ms": row[2], "refresh_count": row[3]}


def resolve(db: psycopg.Connection[Any], connection: str) -> tuple[Any, ...]:
    rows = db.execute(
        "SELECT connector_instance_id, connector_id, resolution, candidates"
        " FROM refproj.resolve_connection(%s)",
        (connection,),
    ).fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def retained_stream(
    db: psycopg.Connection[Any], connection: str, stream: str, records: int, connector: str = "acme"
) -> None:
    db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count)"
        " VALUES (%s, %s, %s, %s)",
        (connection, stream, connector, records),
    )


def retained_connection(
    db: psycopg.Connection[Any],
    connection: str,
    record_bytes: int,
    history_bytes: int,
    blob_bytes: int,
    connector: str = "acme",
) -> None:
    db.execute(
        "INSERT INTO retained_size_connection (connector_instance_id, connector_id, record_count,"
        " current_record_json_bytes, record_history_json_bytes, blob_bytes) VALUES (%s, %s, 0, %s, %s, %s)",
        (connection, connector, record_bytes, history_bytes, blob_bytes),
    )


def run_rows(world: World, run_id: str, connector: str = "acme") -> list[dict[str, Any]]:
    return [r for r in world.runs(connector) if r["run_id"] == run_id]


def last_runs(world: World, *connections: str) -> dict[str, Any]:
    """Overview last_run of each connection (after a refresh)."""
    overview = world.overview()
    return {c: overview[c]["last_run"] for c in connections}


# --------------------------------------------------------------------------------------------------
# Run evidence goes to the right connection
# --------------------------------------------------------------------------------------------------


def test_s01_sibling_browser_runs(db):
    w = World(db)
    w.siblings()
    w.surface_failure("run_w", "12:01", "acme:cin_work", wait_reason="surface_unhealthy")
    w.surface_failure("run_p", "12:02", "acme:cin_personal", wait_reason="capacity_full")
    assert w.refresh() is True

    work_run = brief(
        "run_w", "surface_failed", "12:01", "12:01", reason="surface_unhealthy", key="acme:cin_work"
    )
    personal_run = brief(
        "run_p", "surface_failed", "12:02", "12:02", reason="capacity_full", key="acme:cin_personal"
    )
    overview = w.overview("12:05")
    assert overview["cin_work"]["last_run"] == work_run
    assert overview["cin_personal"]["last_run"] == personal_run
    assert overview["cin_work"]["last_run"]["run_id"] != "run_p"
    assert overview["cin_personal"]["last_run"]["run_id"] != "run_w"
    assert overview["cin_work"]["failures_since_last_success"] == 1
    assert overview["cin_personal"]["failures_since_last_success"] == 1
    assert overview["cin_work"]["health"] == {"state": "failing", "reason": "surface_unhealthy"}
    assert overview["cin_personal"]["health"] == {"state": "failing", "reason": "capacity_full"}

    assert w.evidence("cin_work") == {
        "last_run": work_run,
        "last_successful_run": None,
        "failures_since_last_success": 1,
    }
    assert w.evidence("cin_personal") == {
        "last_run": personal_run,
        "last_successful_run": None,
        "failures_since_last_success": 1,
    }
    work = w.detail("cin_work")
    personal = w.detail("cin_personal")
    assert work is not None and personal is not None
    assert [r["run_id"] for r in work["recent_runs"]] == ["run_w"]
    assert [r["run_id"] for r in personal["recent_runs"]] == ["run_p"]
    assert work["recent_runs"][0]["browser_surface_wait_reason"] == "surface_unhealthy"
    assert work["unattributed_runs"] == 0


def test_s02_stale_setup_shell(db):
    w = World(db)
    w.siblings()
    w.connection(
        "cin_old_shell",
        status="revoked",
        source_binding={"kind": "browser_enrollment_shell"},
        created="08:00",
        revoked="08:30",
    )
    w.surface_failure("run_w", "12:00", "acme:cin_work", wait_reason="surface_unhealthy")
    w.surface_failure("run_p", "12:05", "acme:cin_personal", wait_reason="capacity_full")
    # The shell's run is the newest run of the connector.
    w.surface_failure("run_shell", "12:30", "acme:cin_old_shell", wait_reason="profile_missing")
    assert w.refresh() is True

    overview = w.overview("12:35")
    assert list(overview) == ["cin_work", "cin_personal"]
    assert overview["cin_work"]["last_run"]["run_id"] == "run_w"
    assert overview["cin_personal"]["last_run"]["run_id"] == "run_p"
    for connection in ("cin_work", "cin_personal"):
        evidence = w.evidence(connection)
        assert evidence["last_run"]["run_id"] != "run_shell"
        assert evidence["failures_since_last_success"] == 1
        detail = w.detail(connection)
        assert detail is not None
        assert "run_shell" not in [r["run_id"] for r in detail["recent_runs"]]
        assert detail["last_run"]["run_id"] != "run_shell"
        # The shell's run matches the shell (rule 1), so it is not unattributed.
        assert detail["unattributed_runs"] == 0
    assert w.detail("cin_old_shell") is None


def test_s03_explicit_identity(db):
    w = World(db)
    w.siblings()
    w.event("run_e", "run.started", "12:00", data={"connection_id": "cin_work"})
    w.event("run_e", "run.completed", "12:04", status="succeeded", data={"connection_id": "cin_work"})
    assert w.refresh() is True

    expected = brief("run_e", "succeeded", "12:00", "12:04", events=2)
    [row] = run_rows(w, "run_e")
    assert {k: v for k, v in row.items() if k != "last_event_seq"} == {
        **expected,
        "connector_id": "acme",
        "connector_instance_id": "cin_work",
        "browser_surface_status": None,
        "browser_surface_wait_reason": None,
        "known_gaps": [],
        "collection_facts": None,
        "records_emitted": None,
    }
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == expected
    assert overview["cin_work"]["last_successful_run"] == expected
    assert overview["cin_work"]["failures_since_last_success"] == 0
    assert overview["cin_personal"]["last_run"] is None
    assert overview["cin_personal"]["last_successful_run"] is None
    assert overview["cin_personal"]["health"] == {"state": "idle", "reason": "never_run"}
    assert w.evidence("cin_work") == {
        "last_run": expected,
        "last_successful_run": expected,
        "failures_since_last_success": 0,
    }
    assert w.evidence("cin_personal") == NO_EVIDENCE
    personal = w.detail("cin_personal")
    assert personal is not None
    assert personal["recent_runs"] == []
    assert personal["unattributed_runs"] == 0


def test_s04_legacy_run(db):
    w = World(db)
    w.siblings()
    w.event("run_legacy", "run.started", "12:00")
    w.event("run_legacy", "run.completed", "12:03", status="succeeded")
    legacy = brief("run_legacy", "succeeded", "12:00", "12:03", events=2)

    def check(work_run: Any, personal_present: bool, unattributed: int) -> None:
        assert w.refresh() is True
        assert w.evidence("cin_work")["last_run"] == work_run
        overview = w.overview("12:10")
        assert "cin_work" in overview, "work (active, paused or ordinarily revoked) must stay listed"
        assert overview["cin_work"]["last_run"] == work_run
        assert overview["cin_work"]["last_successful_run"] == work_run
        work = w.detail("cin_work")
        assert work is not None
        assert work["last_run"] == work_run
        assert work["unattributed_runs"] == unattributed
        assert [r["run_id"] for r in work["recent_runs"]] == (["run_legacy"] if work_run else [])
        if personal_present:
            assert overview["cin_personal"]["last_run"] is None
            assert w.evidence("cin_personal") == NO_EVIDENCE
            personal = w.detail("cin_personal")
            assert personal is not None
            assert personal["last_run"] is None
            assert personal["recent_runs"] == []
            assert personal["unattributed_runs"] == unattributed
        else:
            assert "cin_personal" not in overview
            assert w.detail("cin_personal") is None

    # Two active siblings: nobody's run, unattributed in both details.
    check(None, True, 1)
    # Pause personal: work is the only active connection.
    db.execute(
        "UPDATE connector_instances SET status = 'paused' WHERE connector_instance_id = 'cin_personal'"
    )
    check(legacy, True, 0)
    assert w.overview("12:10")["cin_personal"]["health"]["state"] == "paused"
    # Back to two active siblings: nobody's again.
    db.execute(
        "UPDATE connector_instances SET status = 'active' WHERE connector_instance_id = 'cin_personal'"
    )
    check(None, True, 1)
    # Delete personal instead: the same as pausing it.
    db.execute("DELETE FROM connector_instances WHERE connector_instance_id = 'cin_personal'")
    check(legacy, False, 0)
    # Revoke work too: no active connection is left, so nobody's.
    db.execute(
        "UPDATE connector_instances SET status = 'revoked', revoked_at = %s"
        " WHERE connector_instance_id = 'cin_work'",
        (at("12:05"),),
    )
    check(None, False, 1)
    assert w.overview("12:10")["cin_work"]["health"]["state"] == "revoked"


def test_s05_same_run_id_on_two_identities(db):
    w = World(db)
    w.siblings()
    w.succeeded_run("run_x", "cin_work", "12:00", "12:05")
    w.failed_run("run_x", "cin_personal", "12:01", "12:06", "connector_exit")
    assert w.refresh() is True

    rows = run_rows(w, "run_x")
    assert [
        (r["connector_instance_id"], r["status"], r["event_count"], r["failure_reason"]) for r in rows
    ] == [
        ("cin_personal", "failed", 2, "connector_exit"),
        ("cin_work", "succeeded", 2, None),
    ]
    work_run = brief("run_x", "succeeded", "12:00", "12:05", events=2)
    personal_run = brief("run_x", "failed", "12:01", "12:06", events=2, reason="connector_exit")
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == work_run
    assert overview["cin_work"]["last_successful_run"] == work_run
    assert overview["cin_work"]["failures_since_last_success"] == 0
    assert overview["cin_personal"]["last_run"] == personal_run
    assert overview["cin_personal"]["last_successful_run"] is None
    assert overview["cin_personal"]["failures_since_last_success"] == 1
    assert w.evidence("cin_work")["last_run"] == work_run
    assert w.evidence("cin_personal")["last_run"] == personal_run


def test_s06_other_connectors_run_with_my_identity(db):
    w = World(db)
    w.siblings()
    w.connector("other")
    w.connection("cin_other", "other", created="09:10")
    w.succeeded_run("run_o", "cin_work", "12:00", "12:05", connector="other")
    # A run of `other` carrying work's expected profile key is not work's either.
    w.surface_failure("run_ok", "12:07", "acme:cin_work", connector="other", wait_reason="x")
    assert w.refresh() is True

    other_runs = w.runs("other")
    assert [(r["run_id"], r["connector_instance_id"], r["status"]) for r in other_runs] == [
        ("run_o", "cin_work", "succeeded"),
        ("run_ok", None, "surface_failed"),
    ]
    assert w.runs("acme") == []
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] is None
    assert overview["cin_work"]["last_successful_run"] is None
    assert overview["cin_other"]["last_run"] is None
    assert w.evidence("cin_work") == NO_EVIDENCE
    assert w.evidence("cin_other") == NO_EVIDENCE
    work = w.detail("cin_work")
    other = w.detail("cin_other")
    assert work is not None and other is not None
    assert work["recent_runs"] == []
    assert work["unattributed_runs"] == 0
    assert other["recent_runs"] == []
    assert other["unattributed_runs"] == 2


# --------------------------------------------------------------------------------------------------
# Status and failure evidence
# --------------------------------------------------------------------------------------------------


def test_s07_failed_then_later_completed_sub_event(db):
    w = World(db)
    w.siblings()
    w.event("run_f", "run.started", "12:00", identity="cin_work")
    w.event(
        "run_f",
        "run.failed",
        "12:02",
        status="failed",
        identity="cin_work",
        data={"reason": "connector_exit"},
    )
    w.event("run_f", "run.resource_synced", "12:04", status="completed", identity="cin_work")
    assert w.refresh() is True

    expected = brief("run_f", "failed", "12:00", "12:04", events=3, reason="connector_exit")
    [row] = run_rows(w, "run_f")
    assert row["status"] == "failed"
    assert row["failure_reason"] == "connector_exit"
    assert w.overview("12:10")["cin_work"]["last_run"] == expected
    assert w.evidence("cin_work")["last_run"] == expected
    assert w.overview("12:10")["cin_work"]["health"] == {"state": "failing", "reason": "connector_exit"}


def test_s08_started_only_orphaned_or_in_progress(db):
    w = World(db)
    w.siblings()
    w.event("run_s", "run.started", "12:00", identity="cin_work")
    assert w.refresh() is True

    orphaned = brief("run_s", "failed", "12:00", "12:00", reason="orphaned_started_run")
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == orphaned
    assert overview["cin_work"]["health"] == {"state": "failing", "reason": "orphaned_started_run"}
    assert overview["cin_work"]["failures_since_last_success"] == 1
    assert w.evidence("cin_work")["last_run"] == orphaned

    w.active_run("cin_work", "run_s", "12:00")
    assert w.refresh() is True
    running = brief("run_s", "in_progress", "12:00", "12:00", finished=False)
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == running
    assert overview["cin_work"]["last_run"]["failure_reason"] is None
    assert overview["cin_work"]["last_run"]["finished_at"] is None
    assert overview["cin_work"]["health"]["state"] == "running"
    assert overview["cin_work"]["failures_since_last_success"] == 0
    assert w.evidence("cin_work")["last_run"] == running
    detail = w.detail("cin_work", "12:10")
    assert detail is not None
    assert detail["health"]["state"] == "running"
    [row] = run_rows(w, "run_s")
    assert (row["status"], row["finished_at"], row["failure_reason"]) == ("in_progress", None, None)


def test_s09_surface_failure_reason_fallbacks(db):
    w = World(db)
    w.siblings()
    w.surface_failure("run_st", "12:00", "acme:cin_work", surface_status="surface_failed")
    w.surface_failure("run_none", "12:01", "acme:cin_personal")
    assert w.refresh() is True

    [with_status] = run_rows(w, "run_st")
    [with_neither] = run_rows(w, "run_none")
    assert (
        with_status["status"],
        with_status["failure_reason"],
        with_status["browser_surface_status"],
        with_status["browser_surface_wait_reason"],
    ) == ("surface_failed", "surface_failed", "surface_failed", None)
    assert (
        with_neither["status"],
        with_neither["failure_reason"],
        with_neither["browser_surface_status"],
        with_neither["browser_surface_wait_reason"],
    ) == ("surface_failed", "browser_surface_failed", None, None)
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == brief(
        "run_st", "surface_failed", "12:00", "12:00", reason="surface_failed", key="acme:cin_work"
    )
    assert overview["cin_personal"]["last_run"] == brief(
        "run_none",
        "surface_failed",
        "12:01",
        "12:01",
        reason="browser_surface_failed",
        key="acme:cin_personal",
    )
    assert overview["cin_personal"]["health"] == {"state": "failing", "reason": "browser_surface_failed"}


def test_s10_two_terminal_events_highest_seq_wins(db):
    w = World(db)
    w.siblings()
    w.event("run_t", "run.started", "12:00", identity="cin_work")
    completed = w.event("run_t", "run.completed", "12:05", status="succeeded", identity="cin_work")
    failed = w.event(
        "run_t", "run.failed", "12:05", status="failed", identity="cin_work", data={"reason": "late_failure"}
    )
    assert failed > completed
    assert w.refresh() is True

    expected = brief("run_t", "failed", "12:00", "12:05", events=3, reason="late_failure")
    [row] = run_rows(w, "run_t")
    assert row["status"] == "failed"
    assert row["last_event_seq"] == failed
    overview = w.overview("12:10")
    assert overview["cin_work"]["last_run"] == expected
    assert overview["cin_work"]["last_successful_run"] is None
    assert overview["cin_work"]["failures_since_last_success"] == 1
    assert w.evidence("cin_work")["last_run"] == expected


def test_s11_long_run_of_progress_events(db):
    w = World(db)
    w.siblings()
    w.event("run_long", "run.started", "12:00", identity="cin_work")
    inserted = db.execute(
        "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
        " connector_instance_id)"
        " SELECT 'run.progress_reported', %s + n * interval '500 milliseconds', 'ok', 'connector', 'acme',"
        " 'run_long', 'cin_work' FROM generate_series(1, 6000) AS n",
        (at("12:00"),),
    )
    assert inserted.rowcount == 6000
    w.event(
        "run_long", "run.failed", "13:00", status="failed", identity="cin_work", data={"reason": "timeout"}
    )
    assert w.refresh() is True

    expected = brief("run_long", "failed", "12:00", "13:00", events=6002, reason="timeout")
    [row] = run_rows(w, "run_long")
    assert (row["status"], row["failure_reason"], row["event_count"]) == ("failed", "timeout", 6002)
    assert w.overview("13:10")["cin_work"]["last_run"] == expected
    assert w.evidence("cin_work")["last_run"] == expected
    detail = w.detail("cin_work")
    assert detail is not None
    assert detail["recent_runs"][0]["event_count"] == 6002


def test_s12_garbage_payloads(db):
    w = World(db)
    w.siblings()
    w.succeeded_run("run_p", "cin_personal", "11:00", "11:05", data={"records_emitted": 3})
    w.failed_run("run_p2", "cin_personal", "11:10", "11:15", "quota")
    w.surface_failure("run_pk", "11:20", "acme:cin_personal", wait_reason="capacity_full")
    w.succeeded_run("run_w0", "cin_work", "10:00", "10:05")
    assert w.refresh() is True
    personal_before = w.overview("12:00")["cin_personal"]
    personal_detail_before = w.detail("cin_personal", "12:00")
    personal_evidence_before = w.evidence("cin_personal")
    assert personal_before["last_run"]["run_id"] == "run_pk"

    # data.browser_surface is a string (so the event is not a browser-surface event).
    w.event(
        "g_surface",
        "run.browser_surface_failed",
        "12:10",
        status="surface_failed",
        identity="cin_work",
        data={"browser_surface": "acme:cin_personal"},
    )
    # data.reason is a number.
    w.event("g_reason", "run.failed", "12:20", status="failed", identity="cin_work", data={"reason": 42})
    # data is an array.
    db.execute(
        "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
        " connector_instance_id, data) VALUES ('run.completed', %s, 'succeeded', 'connector', 'acme',"
        " 'g_array', 'cin_work', '[]'::jsonb)",
        (at("12:30"),),
    )
    # occurred_at in 2999, with huge and mistyped terminal facts.
    w.event(
        "g_future",
        "run.completed",
        "2999-01-01T00:00:00+00:00",
        status="succeeded",
        identity="cin_work",
        data={
            "records_emitted": 1e300,
            "known_gaps": "none",
            "collection_facts": [1, 2],
            "connection_id": 17,
        },
    )
    # A connector whose manifest is garbage too.
    w.connector(
        "junk",
        manifest={
            "streams": "messages",
            "refresh_policy": {"max_staleness_seconds": 1e300},
            "capabilities": {"browser_surface": {"profile_key": 42}},
        },
    )
    w.connection("junk", "junk", created="09:30")
    w.surface_failure("g_junk", "12:40", "junk", connector="junk", wait_reason="w")

    assert w.refresh() is True
    status_after = status(db)
    assert status_after["source_changed"] is False

    # Every other connection's row is exactly what it was.
    assert w.overview("12:00")["cin_personal"] == personal_before
    assert w.detail("cin_personal", "12:00") == personal_detail_before
    assert w.evidence("cin_personal") == personal_evidence_before

    runs = {r["run_id"]: r for r in w.runs("acme")}
    assert (
        runs["g_surface"]["status"],
        runs["g_surface"]["browser_surface_profile_key"],
        runs["g_surface"]["failure_reason"],
    ) == ("surface_failed", None, "browser_surface_failed")
    assert (runs["g_reason"]["status"], runs["g_reason"]["failure_reason"]) == ("failed", None)
    g_array = runs["g_array"]
    assert (
        g_array["status"],
        g_array["connector_instance_id"],
        g_array["known_gaps"],
        g_array["collection_facts"],
        g_array["records_emitted"],
    ) == ("succeeded", "cin_work", [], None, None)
    assert (
        runs["g_future"]["last_at"],
        runs["g_future"]["records_emitted"],
        runs["g_future"]["known_gaps"],
        runs["g_future"]["collection_facts"],
        runs["g_future"]["connector_instance_id"],
    ) == (iso("2999-01-01T00:00:00+00:00"), None, [], None, "cin_work")

    work = w.overview("12:00")["cin_work"]
    future = brief("g_future", "succeeded", "2999-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00")
    assert work["last_run"] == future
    assert work["last_successful_run"] == future
    junk = w.overview("12:00")["junk"]
    assert junk["streams"] == []
    assert junk["max_staleness"] == 86400.0
    assert junk["last_run"]["run_id"] == "g_junk"
    assert junk["last_run"]["browser_surface_profile_key"] == "junk"


# --------------------------------------------------------------------------------------------------
# Summary rows
# --------------------------------------------------------------------------------------------------


def test_s13_retained_size(db):
    w = World(db)
    w.siblings()
    retained_stream(db, "cin_work", "messages", 5)
    retained_stream(db, "cin_work", "files", 2)
    retained_connection(db, "cin_work", 100, 20, 4000)
    assert w.refresh() is True

    overview = w.overview("12:00")
    work = overview["cin_work"]
    assert (work["total_records"], work["stream_count"], work["total_retained_bytes"]) == (7, 2, 4120)
    assert work["retained_bytes"] == {
        "record_json_bytes": 100,
        "record_changes_json_bytes": 20,
        "blob_bytes": 4000,
        "total_bytes": 4120,
    }
    personal = overview["cin_personal"]
    assert (personal["total_records"], personal["stream_count"], personal["total_retained_bytes"]) == (
        0,
        0,
        0,
    )
    assert personal["retained_bytes"] is None

    work_detail = w.detail("cin_work")
    assert work_detail is not None
    assert [(s["stream"], s["record_count"]) for s in work_detail["streams_retained"]] == [
        ("files", 2),
        ("messages", 5),
    ]
    personal_detail = w.detail("cin_personal")
    assert personal_detail is not None
    assert personal_detail["streams_retained"] == []
    assert personal_detail["retained_bytes"] is None


def test_s14_visibility(db):
    w = World(db)
    w.connector("acme")
    w.connection("cin_draft", status="draft", created="09:00")
    w.connection(
        "cin_revoked", status="revoked", source_binding={"kind": "oauth"}, created="09:01", revoked="10:00"
    )
    # An ordinary revoked account connection with the default (empty) source_binding.
    w.connection("cin_revoked_plain", status="revoked", created="09:01", revoked="10:30")
    w.connection(
        "cin_shell",
        status="revoked",
        source_binding={"kind": "browser_enrollment_shell"},
        created="09:02",
        revoked="10:01",
    )
    w.connection(
        "cin_secret",
        status="revoked",
        source_binding={"kind": "static_secret_draft"},
        created="09:03",
        revoked="10:02",
    )
    w.connection(
        "cin_upload",
        status="revoked",
        source_binding={"kind": "manual_upload_draft"},
        created="09:04",
        revoked="10:03",
    )
    # Not revoked, so not retired even with a setup-attempt binding.
    w.connection(
        "cin_shell_live",
        status="active",
        source_binding={"kind": "browser_enrollment_shell"},
        created="09:05",
    )
    assert w.refresh() is True

    overview = w.overview("12:00")
    assert overview["cin_draft"]["health"]["state"] == "setup"
    assert overview["cin_draft"]["status"] == "draft"
    assert overview["cin_revoked"]["health"]["state"] == "revoked"
    assert overview["cin_revoked"]["revoked_at"] == iso("10:00")
    assert list(overview) == ["cin_draft", "cin_revoked", "cin_revoked_plain", "cin_shell_live"]
    assert overview["cin_revoked_plain"]["health"]["state"] == "revoked"
    assert overview["cin_revoked_plain"]["revoked_at"] == iso("10:30")
    assert overview["cin_shell_live"]["health"] == {"state": "idle", "reason": "never_run"}
    for retired in ("cin_shell", "cin_secret", "cin_upload"):
        assert w.detail(retired) is None
        assert resolve(db, retired) == (None, None, "not_found", 0)
    revoked = w.detail("cin_revoked", "12:00")
    assert revoked is not None
    assert (revoked["revoked_at"], revoked["health"]["state"]) == (iso("10:00"), "revoked")
    assert resolve(db, "cin_revoked_plain") == ("cin_revoked_plain", "acme", "exact", 1)
    revoked_plain = w.detail("cin_revoked_plain", "12:00")
    assert revoked_plain is not None
    assert (revoked_plain["revoked_at"], revoked_plain["health"]["state"]) == (iso("10:30"), "revoked")
    draft = w.detail("cin_draft", "12:00")
    assert draft is not None
    assert draft["health"]["state"] == "setup"


def test_s15_freshness_moves_with_the_clock(db):
    w = World(db)
    w.connector("acme", manifest={"refresh_policy": {"max_staleness_seconds": 3600}})
    w.connection("cin_work", created="09:00")
    w.connection("cin_personal", created="09:05")
    w.succeeded_run("run_ok", "cin_work", "11:55", "12:00")
    assert w.refresh() is True
    before = status(db)

    early = w.overview("12:30")["cin_work"]
    late = w.overview("13:30")["cin_work"]

    assert status(db) == before
    assert before["source_changed"] is False
    assert early["max_staleness"] == 3600.0
    assert early["freshness"]["status"] == "current"
    assert early["freshness"]["captured_at"] == iso("12:00")
    assert early["freshness"]["last_attempted_at"] == iso("12:00")
    assert early["health"]["state"] == "healthy"
    assert late["freshness"]["status"] == "stale"
    assert late["freshness"]["captured_at"] == iso("12:00")
    assert late["health"] == {"state": "stale", "reason": "past_max_staleness"}
    # The step is exactly at the last success plus max_staleness: current up to and including it.
    edge = w.overview("2026-01-05T13:00:00+00:00")["cin_work"]
    past = w.overview("2026-01-05T13:00:00.000001+00:00")["cin_work"]
    assert (edge["freshness"]["status"], edge["health"]["state"]) == ("current", "healthy")
    assert (past["freshness"]["status"], past["health"]["state"]) == ("stale", "stale")
    # Apart from the read-time fields the two reads are the same stored row.
    strip = {"freshness", "health"}
    assert {k: v for k, v in early.items() if k not in strip} == {
        k: v for k, v in late.items() if k not in strip
    }
    # The live detail agrees at both instants.
    detail_early = w.detail("cin_work", "12:30")
    detail_late = w.detail("cin_work", "13:30")
    assert detail_early is not None and detail_late is not None
    assert (detail_early["freshness"], detail_early["health"]) == (early["freshness"], early["health"])
    assert (detail_late["freshness"], detail_late["health"]) == (late["freshness"], late["health"])


def test_far_future_and_infinite_event_times_keep_the_overview_serving(db):
    """Event times at the edge of the timestamp range are legal rows: a success there is current
    (its staleness deadline lies beyond any read time), and nobody's overview read fails."""
    w = World(db)
    w.siblings()
    w.succeeded_run("run_far", "cin_work", "11:00", "11:05")
    w.succeeded_run("run_inf", "cin_personal", "11:00", "11:05")
    db.execute("UPDATE spine_events SET occurred_at = '290000-01-01 00:00:00+00' WHERE run_id = 'run_far'")
    db.execute("UPDATE spine_events SET occurred_at = 'infinity' WHERE run_id = 'run_inf'")
    assert w.refresh() is True

    rows = w.overview("12:00")
    # No ISO-8601 parser reads these: served as null (README); run_summaries keeps them.
    assert rows["cin_work"]["last_successful_run"]["last_at"] is None
    assert rows["cin_personal"]["last_successful_run"]["last_at"] is None
    assert [(r["run_id"], r["last_at"]) for r in w.runs()] == [
        ("run_far", "290000-01-01T00:00:00+00:00"),
        ("run_inf", "infinity"),
    ]
    for connection in ("cin_work", "cin_personal"):
        assert rows[connection]["freshness"]["status"] == "current"
        assert rows[connection]["health"] == {"state": "healthy", "reason": None}
        row, detail = rows[connection], w.detail(connection, "12:00")
        assert detail is not None
        assert (detail["freshness"], detail["health"]) == (row["freshness"], row["health"])


def test_served_json_is_in_utc_whatever_the_refreshing_session_uses(db):
    """The JSON text the shim serves is written at refresh time, so it must not carry the
    refreshing session's TimeZone or IntervalStyle (the typed function follows the reader's)."""
    w = World(db)
    w.siblings()
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    db.execute("SET TimeZone = 'Asia/Kolkata'")
    db.execute("SET IntervalStyle = 'iso_8601'")
    assert w.refresh() is True
    db.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary_json")
    served = json.loads(
        db.execute("SELECT refproj.connection_summaries_json(%s)", (at("12:00"),)).fetchone()[0]
    )
    typed = db.execute(
        "SELECT created_at::text, max_staleness::text FROM refproj.connection_summaries(%s)", (at("12:00"),)
    ).fetchone()
    assert typed == ("2026-01-05 14:30:00+05:30", "PT24H")
    work = served[0]
    assert work["connector_instance_id"] == "cin_work"
    assert work["created_at"] == iso("09:00") == "2026-01-05T09:00:00+00:00"
    assert work["max_staleness"] == 86400.0
    assert work["last_run"]["last_at"] == iso("11:05")
    assert work["freshness"]["captured_at"] == iso("11:05")
    assert work["health"] == {"state": "healthy", "reason": None}


def test_s16_failure_after_success(db):
    w = World(db)
    w.siblings()
    w.failed_run("run_old", "cin_work", "10:55", "11:00", "older_failure")
    w.succeeded_run("run_ok", "cin_work", "11:55", "12:00")
    w.failed_run("run_bad", "cin_work", "12:05", "12:10", "quota_exceeded")
    assert w.refresh() is True

    work = w.overview("12:15")["cin_work"]
    assert work["last_run"] == brief("run_bad", "failed", "12:05", "12:10", events=2, reason="quota_exceeded")
    assert work["last_successful_run"] == brief("run_ok", "succeeded", "11:55", "12:00", events=2)
    assert work["failures_since_last_success"] == 1
    assert work["freshness"]["status"] == "stale"
    assert work["freshness"]["captured_at"] == iso("12:00")
    assert work["freshness"]["last_attempted_at"] == iso("12:10")
    assert work["health"] == {"state": "failing", "reason": "quota_exceeded"}
    evidence = w.evidence("cin_work")
    assert evidence["failures_since_last_success"] == 1
    assert evidence["last_successful_run"]["run_id"] == "run_ok"


def test_s17_detail_resolution(db):
    w = World(db)
    w.siblings()
    w.connector("solo")
    w.connection("cin_solo", "solo", created="09:00")
    w.connection(
        "cin_solo_shell",
        "solo",
        status="revoked",
        source_binding={"kind": "browser_enrollment_shell"},
        created="08:00",
        revoked="08:30",
    )
    assert w.refresh() is True

    assert resolve(db, "cin_work") == ("cin_work", "acme", "exact", 1)
    work = w.detail("cin_work")
    assert work is not None and work["connector_instance_id"] == "cin_work"

    assert resolve(db, "acme") == (None, "acme", "ambiguous", 2)
    assert w.detail("acme") is None

    assert resolve(db, "solo") == ("cin_solo", "solo", "connector", 1)
    solo = w.detail("solo")
    assert solo is not None and solo["connector_instance_id"] == "cin_solo"

    assert resolve(db, "nope") == (None, None, "not_found", 0)
    assert w.detail("nope") is None
    assert resolve(db, "cin_solo_shell") == (None, None, "not_found", 0)
    assert w.detail("cin_solo_shell") is None

    # Personal becomes a retired setup attempt: acme now has one visible connection.
    db.execute(
        "UPDATE connector_instances SET status = 'revoked', revoked_at = %s,"
        ' source_binding = \'{"kind": "browser_enrollment_shell"}\''
        " WHERE connector_instance_id = 'cin_personal'",
        (at("10:00"),),
    )
    assert resolve(db, "acme") == ("cin_work", "acme", "connector", 1)
    one = w.detail("acme")
    assert one is not None and one["connector_instance_id"] == "cin_work"
    assert resolve(db, "cin_personal") == (None, None, "not_found", 0)
    assert w.detail("cin_personal") is None


def test_s18_overview_and_detail_agree(db):
    w = World(db)
    w.connector(
        "acme",
        display_name="Acme",
        manifest={
            "streams": ["messages", {"name": "files"}],
            "refresh_policy": {"max_staleness_seconds": 7200},
        },
    )
    w.connection("cin_work", created="09:00", display_name="Work")
    w.connection("cin_personal", created="09:05")
    w.connection("cin_draft", status="draft", created="09:06")
    w.connection(
        "cin_revoked", status="revoked", source_binding={"kind": "oauth"}, created="09:07", revoked="11:00"
    )
    w.connection(
        "cin_shell",
        status="revoked",
        source_binding={"kind": "browser_enrollment_shell"},
        created="09:08",
        revoked="11:00",
    )
    w.connector("other", manifest={"capabilities": {"browser_surface": {"profile_key": "shop"}}})
    w.connection("other", "other", created="08:00")
    w.connection("cin_paused", "other", status="paused", created="08:30")
    w.succeeded_run("run_a", "cin_work", "11:00", "11:10", data={"known_gaps": ["x"], "records_emitted": 4})
    w.failed_run("run_b", "cin_work", "12:00", "12:05", "connector_exit")
    w.surface_failure("run_c", "12:01", "acme:cin_personal", wait_reason="capacity_full")
    w.event("run_d", "run.started", "12:02", identity="cin_revoked")
    w.event("run_e", "run.started", "12:03", connector="other", identity="other")
    w.active_run("other", "run_e", "12:03", "other")
    w.surface_failure("run_f", "12:04", "shop", connector="other", surface_status="surface_failed")
    w.event("run_legacy", "run.completed", "12:06", status="succeeded", connector="other")
    retained_stream(db, "cin_work", "messages", 5)
    retained_connection(db, "cin_work", 1, 2, 3)
    assert w.refresh() is True

    overview = w.overview("12:30")
    assert list(overview) == ["cin_work", "cin_personal", "cin_draft", "cin_revoked", "other", "cin_paused"]
    # The world is not trivial: runs of every kind are attributed.
    assert overview["cin_work"]["last_run"]["run_id"] == "run_b"
    assert overview["cin_personal"]["last_run"]["run_id"] == "run_c"
    assert overview["cin_revoked"]["last_run"]["run_id"] == "run_d"
    assert overview["other"]["last_run"]["run_id"] == "run_legacy"
    assert overview["cin_work"]["streams"] == ["messages", "files"]
    for connection, row in overview.items():
        detail = w.detail(connection, "12:30")
        assert detail is not None, connection
        shared = set(row) & set(detail)
        assert shared == set(row), connection
        assert {k: detail[k] for k in shared} == row, connection


# --------------------------------------------------------------------------------------------------
# Write detection, refresh bookkeeping, overview order
# --------------------------------------------------------------------------------------------------

# table -> (setup, insert, update, delete); update and delete each touch exactly one row.
SOURCE_WRITES: dict[str, tuple[list[str], str, str, str]] = {
    "connectors": (
        [],
        "INSERT INTO connectors (connector_id) VALUES ('c1')",
        "UPDATE connectors SET display_name = 'C one' WHERE connector_id = 'c1'",
        "DELETE FROM connectors WHERE connector_id = 'c1'",
    ),
    "connector_instances": (
        ["INSERT INTO connectors (connector_id) VALUES ('acme')"],
        "INSERT INTO connector_instances (connector_instance_id, connector_id) VALUES ('cin_1', 'acme')",
        "UPDATE connector_instances SET status = 'paused' WHERE connector_instance_id = 'cin_1'",
        "DELETE FROM connector_instances WHERE connector_instance_id = 'cin_1'",
    ),
    "spine_events": (
        [],
        "INSERT INTO spine_events (event_id, event_type) VALUES ('ev1', 'run.started')",
        "UPDATE spine_events SET status = 'failed' WHERE event_id = 'ev1'",
        "DELETE FROM spine_events WHERE event_id = 'ev1'",
    ),
    "controller_active_runs": (
        [],
        "INSERT INTO controller_active_runs VALUES ('cin_1', 'acme', 'run_1', now())",
        "UPDATE controller_active_runs SET started_at = now() - interval '1 minute' WHERE run_id = 'run_1'",
        "DELETE FROM controller_active_runs WHERE run_id = 'run_1'",
    ),
    "retained_size_connection": (
        [],
        "INSERT INTO retained_size_connection (connector_instance_id, connector_id) VALUES ('cin_1', 'acme')",
        "UPDATE retained_size_connection SET blob_bytes = 5 WHERE connector_instance_id = 'cin_1'",
        "DELETE FROM retained_size_connection WHERE connector_instance_id = 'cin_1'",
    ),
    "retained_size_stream": (
        [],
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id)"
        " VALUES ('cin_1', 's', 'acme')",
        "UPDATE retained_size_stream SET record_count = 5 WHERE connector_instance_id = 'cin_1'",
        "DELETE FROM retained_size_stream WHERE connector_instance_id = 'cin_1'",
    ),
}


@pytest.mark.parametrize("table", list(SOURCE_WRITES))
def test_write_detection_per_source_table(db, table):
    setup, insert, update, delete = SOURCE_WRITES[table]
    assert status(db)["source_changed"] is False
    for statement in setup:
        db.execute(statement)
    if setup:
        assert status(db)["source_changed"] is True
        assert World(db).refresh() is True
    assert status(db)["source_changed"] is False

    for statement in (insert, update, delete):
        assert db.execute(statement).rowcount == 1, statement
        assert status(db)["source_changed"] is True, statement
        assert World(db).refresh() is True
        assert status(db)["source_changed"] is False, statement


def test_write_detection_late_committing_transaction(db, db_url):
    w = World(db)
    w.siblings()
    assert w.refresh() is True
    assert status(db)["source_changed"] is False

    with psycopg.connect(db_url) as late:
        World(late).succeeded_run("run_late", "cin_work", "12:00", "12:05")
        # The writer's transaction is still open while the refresh runs.
        assert w.refresh() is True
        assert status(db)["source_changed"] is False
        assert w.overview()["cin_work"]["last_run"] is None
        late.commit()

    assert status(db)["source_changed"] is True
    assert w.overview()["cin_work"]["last_run"] is None
    assert w.refresh() is True
    assert w.overview()["cin_work"]["last_run"] == brief("run_late", "succeeded", "12:00", "12:05", events=2)
    assert status(db)["source_changed"] is False


def test_overview_not_current_until_refresh(db):
    w = World(db)
    w.siblings()
    assert w.overview() == {}
    assert status(db)["source_changed"] is True
    assert w.refresh() is True
    assert w.overview_ids() == ["cin_work", "cin_personal"]


def test_refresh_bookkeeping(db):
    w = World(db)
    first = status(db)
    assert first["refresh_count"] == 0
    assert first["last_refresh_ms"] is None

    results = []
    for _ in range(3):
        row = db.execute(
            "SELECT refreshed, as_of, refresh_ms FROM refproj.refresh_connection_summary()"
        ).fetchone()
        assert row is not None
        results.append(row)
    statuses = status(db)
    assert [r[0] for r in results] == [True, True, True]
    assert statuses["refresh_count"] == 3
    assert first["as_of"] < results[0][1] < results[1][1] < results[2][1]
    assert statuses["as_of"] == results[2][1]
    assert statuses["last_refresh_ms"] == results[2][2]
    assert statuses["last_refresh_ms"] >= 0
    w.siblings()
    assert w.refresh() is True
    assert status(db)["refresh_count"] == 4


def _wait_for_advisory_waiters(db: psycopg.Connection[Any], count: int) -> None:
    """Until `count` sessions wait on an advisory lock (a condition, not a guess)."""
    wait_for(
        lambda: backends_waiting(db, "Lock", "%", wait_event="advisory") >= count,
        what="refresh callers queued on the advisory lock",
    )


def test_refresh_coalesces_queued_callers(db, db_url):
    """A refresh in progress plus two queued callers: only one of the queued two refreshes."""
    w = World(db)
    w.siblings()
    results: list[bool] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                results.append(World(conn).refresh())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT refreshed FROM refproj.refresh_connection_summary()")
        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        _wait_for_advisory_waiters(db, 2)
        holder.commit()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results) == [False, True]
    assert status(db)["refresh_count"] == 2
    assert w.overview_ids() == ["cin_work", "cin_personal"]


def test_overview_order_and_connector_filter(db):
    w = World(db)
    w.connector("zeta")
    w.connector("alpha")
    w.connector("mid")
    w.connection("z1", "zeta", created="08:00")
    w.connection("a_b", "alpha", created="09:00")
    w.connection("a_a", "alpha", created="09:00")
    w.connection("a_late", "alpha", created="10:00")
    w.connection("a_early", "alpha", created="08:30")
    w.connection("m1", "mid", created="07:00")
    assert w.refresh() is True

    assert w.overview_ids() == ["a_early", "a_a", "a_b", "a_late", "m1", "z1"]
    assert w.overview_ids("alpha") == ["a_early", "a_a", "a_b", "a_late"]
    assert w.overview_ids("zeta") == ["z1"]
    assert w.overview_ids("nope") == []
    rows = db.execute(
        "SELECT connector_id, connector_instance_id"
        " FROM refproj.connection_summaries(p_connector_id => 'mid')"
    ).fetchall()
    assert rows == [("mid", "m1")]


def test_expected_profile_key_from_manifest(db):
    w = World(db)
    w.connector("shop", manifest={"capabilities": {"browser_surface": {"profile_key": "  storefront "}}})
    w.connection("shop", "shop", created="09:00")
    w.connection("cin_b", "shop", created="09:01")
    w.surface_failure("run_base", "12:00", "storefront", connector="shop", wait_reason="a")
    w.surface_failure("run_b", "12:01", "storefront:cin_b", connector="shop", wait_reason="b")
    w.surface_failure("run_default", "12:02", "shop:cin_b", connector="shop", wait_reason="c")
    assert w.refresh() is True

    overview = w.overview("12:10")
    assert overview["shop"]["last_run"]["run_id"] == "run_base"
    assert overview["cin_b"]["last_run"]["run_id"] == "run_b"
    detail = w.detail("cin_b")
    assert detail is not None
    assert detail["unattributed_runs"] == 1


def test_run_evidence_unknown_connection_and_terminal_facts(db):
    """Terminal payload facts reach run_summaries; evidence of an unknown connection raises no_data_found."""
    w = World(db)
    w.siblings()
    with pytest.raises(psycopg.errors.NoDataFound):
        w.evidence("cin_missing")
    db.execute(
        "INSERT INTO spine_events (event_type, source_kind, source_id, run_id, connector_instance_id,"
        " status, occurred_at, data) VALUES ('run.completed', 'connector', 'acme', 'r1', 'cin_work',"
        " 'succeeded', %s, %s)",
        (at("12:00"), Jsonb({"known_gaps": ["g"], "collection_facts": {"n": 1}, "records_emitted": 9})),
    )
    [row] = run_rows(w, "r1")
    assert (row["known_gaps"], row["collection_facts"], row["records_emitted"]) == (["g"], {"n": 1}, 9)

"""The run outcomes that read events back after the pass over spine_events (issue 10).

refproj.run_summaries keeps only the event_seq of a run's newest event with a status and of its
first failure, and reads those events back when the outcome needs them: a run with neither a
terminal event nor run.started takes its newest status, and a run that did not succeed and whose
terminal event gives no reason takes the first failure's. Each case is checked on the live view
and on the stored overview, after a full rebuild and after an incremental refresh, and with two
events sharing one event_seq (an adopted or partitioned table need not keep event_seq unique):
the highest status and the lowest reason win, as they did when the pass carried the events whole.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.world import World


def outcomes(w: World, connector: str = "acme") -> dict[str, tuple[Any, ...]]:
    """run_id -> (status, failure_reason, event_count) from the live view."""
    return {r["run_id"]: (r["status"], r["failure_reason"], r["event_count"]) for r in w.runs(connector)}


def stored(db: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """run_id -> (status, failure_reason, event_count) as refproj.run_facts holds them."""
    rows = db.execute(
        "SELECT run_id, status, brief ->> 'failure_reason', (brief ->> 'event_count')::int"
        " FROM refproj.run_facts WHERE connector_id = 'acme'"
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


# (run, event type, time, status, data), each run's events at 12:00, 12:01 and 12:02.
EVENTS: list[tuple[str, str, str, str, dict[str, str]]] = [
    # No run.started, no terminal event: the newest event with a status gives the status
    # ('unknown' is no status), the first failure the reason.
    ("bare", "run.progress_reported", "12:00", "ok", {}),
    ("bare", "run.progress_reported", "12:01", "rejected", {"failure_reason": "quota"}),
    ("bare", "run.progress_reported", "12:02", "unknown", {}),
    # Started, then a terminal failure without a reason: the earlier rejection's reason.
    ("noreason", "run.started", "12:00", "ok", {}),
    ("noreason", "run.progress_reported", "12:01", "rejected", {"reason": "bad_token"}),
    ("noreason", "run.failed", "12:02", "failed", {}),
    # A success never takes a failure reason, whatever failed on the way.
    ("ok", "run.started", "12:00", "ok", {}),
    ("ok", "run.progress_reported", "12:01", "failed", {"reason": "x"}),
    ("ok", "run.completed", "12:02", "succeeded", {}),
]


def write_runs(w: World, suffix: str) -> None:
    for run_id, event_type, when, status, data in EVENTS:
        w.event(run_id + suffix, event_type, when, status=status, identity="cin_work", data=data)


EXPECTED = {
    "bare": ("rejected", "quota", 3),
    "noreason": ("failed", "bad_token", 3),
    "ok": ("succeeded", None, 3),
}


def test_outcome_events_read_back_on_rebuild_and_incremental_refresh(db: psycopg.Connection[Any]) -> None:
    w = World(db)
    w.siblings()
    write_runs(w, "")
    assert outcomes(w) == EXPECTED
    assert w.refresh() is True
    assert stored(db) == EXPECTED
    db.execute("SELECT refproj.refresh_connection_summary(p_full => true)")
    assert stored(db) == EXPECTED

    write_runs(w, "_2")  # the incremental path: the same runs under new ids
    assert w.refresh() is True
    both = EXPECTED | {run_id + "_2": value for run_id, value in EXPECTED.items()}
    assert outcomes(w) == both
    assert stored(db) == both
    # The three new runs end at the same 12:02: the later last event (ok_2's, written last) wins.
    assert w.overview("12:10")["cin_work"]["last_run"]["run_id"] == "ok_2"
    assert db.execute("SELECT count(*) FROM refproj.verify_projection()").fetchone() == (0,)


def test_two_events_sharing_an_event_seq_break_ties_as_before(db: psycopg.Connection[Any]) -> None:
    w = World(db)
    w.siblings()
    # An application table may not keep event_seq unique (a partitioned one cannot).
    db.execute("ALTER TABLE spine_events DROP CONSTRAINT spine_events_event_seq_key")
    insert = (
        "INSERT INTO spine_events (event_seq, event_type, occurred_at, status, source_kind, source_id,"
        " run_id, connector_instance_id, data)"
        " VALUES (%s, 'run.progress_reported', '2026-01-01 12:00+00', %s, 'connector', 'acme', %s,"
        " 'cin_work', %s::jsonb)"
    )
    for status in ("alpha", "beta"):
        db.execute(insert, (900001, status, "tied_status", "{}"))
    for reason in ("zeta", "eta"):
        db.execute(insert, (900002, "failed", "tied_failure", f'{{"reason": "{reason}"}}'))
    expected = {"tied_status": ("beta", None, 2), "tied_failure": ("failed", "eta", 2)}
    assert outcomes(w) == expected
    assert w.refresh() is True
    assert stored(db) == expected

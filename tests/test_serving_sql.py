"""The SQL the HTTP service reads: keyset pages, valid_until, and the refresh notification."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.world import World, at, iso, overview_forms

JUST_AFTER = "2026-01-05T11:00:00.000001+00:00"


def _page(
    db: psycopg.Connection[Any],
    when: str,
    *,
    connector_id: str | None = None,
    limit: int | None = None,
    after: list[Any] | None = None,
) -> dict[str, Any]:
    key = after or [None, None, None]
    row = db.execute(
        "SELECT to_jsonb(p) - 'connections', p.connections"
        " FROM refproj.connection_summaries_page(%s, %s, %s, %s, %s, %s) AS p",
        (at(when), connector_id, limit, *key),
    ).fetchone()
    assert row is not None
    return {**row[0], "connections": json.loads(row[1])}


def _world(db: psycopg.Connection[Any]) -> World:
    """Two connectors, five connections: cin_work succeeded at 11:05 (acme's default 24 h bound:
    current until 11:05 the next day), cin_old and cin_personal never ran, beta_one failed
    last, beta_two succeeded at 10:00 with beta's 1 h bound (current until 11:00)."""
    world = World(db)
    world.siblings()
    world.connection("cin_old", created="08:00")
    world.connector("beta", manifest={"refresh_policy": {"max_staleness_seconds": 3600}})
    world.connection("beta_one", "beta", created="09:00")
    world.connection("beta_two", "beta", created="09:00")
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    world.succeeded_run("run_b1", "beta_one", "09:30", "10:00", connector="beta")
    world.failed_run("run_b2", "beta_one", "10:30", "10:40", "auth", connector="beta")
    world.succeeded_run("run_b3", "beta_two", "09:50", "10:00", connector="beta")
    world.refresh()
    return world


def test_pages_walk_the_overview_in_order(db: psycopg.Connection[Any]) -> None:
    _world(db)
    _, whole = overview_forms(db, at("12:00"))
    order = [row["connector_instance_id"] for row in whole]
    assert order == ["cin_old", "cin_work", "cin_personal", "beta_one", "beta_two"]
    seen: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        page = _page(db, "12:00", limit=2, after=after)
        pages += 1
        seen.extend(page["connections"])
        assert page["row_count"] == len(page["connections"])
        if not page["more"]:
            break
        after = page["last_key"]
        assert after == [
            page["connections"][-1]["connector_id"],
            page["connections"][-1]["created_at"],
            page["connections"][-1]["connector_instance_id"],
        ]
    assert pages == 3
    assert seen == whole
    assert _page(db, "12:00", limit=5)["more"] is False
    assert _page(db, "12:00", limit=4)["more"] is True


def test_whole_list_equals_connection_summaries_json(db: psycopg.Connection[Any]) -> None:
    _world(db)
    for when in ("10:30", "11:00", "12:00"):
        _, whole = overview_forms(db, at(when))
        page = _page(db, when)
        assert page["connections"] == whole
        assert page["more"] is False and page["last_key"] is None and page["row_count"] == 5
        _, one = overview_forms(db, at(when), "beta")
        assert _page(db, when, connector_id="beta")["connections"] == one
        assert _page(db, when, connector_id="beta", limit=1)["connections"] == one[:1]


def test_a_key_that_vanished_still_pages_on(db: psycopg.Connection[Any]) -> None:
    world = _world(db)
    first = _page(db, "12:00", connector_id="acme", limit=1)
    assert [r["connector_instance_id"] for r in first["connections"]] == ["cin_old"]
    db.execute("DELETE FROM connector_instances WHERE connector_instance_id = 'cin_old'")
    world.refresh()
    rest = _page(db, "12:00", connector_id="acme", after=first["last_key"])
    assert [r["connector_instance_id"] for r in rest["connections"]] == ["cin_work", "cin_personal"]


def test_valid_until_is_the_next_step_of_a_served_row(db: psycopg.Connection[Any]) -> None:
    _world(db)
    # The steps: beta_two at 11:00, cin_work at 11:05 the next day.
    assert _page(db, "10:30")["valid_until"] == iso("11:00")
    # At the step itself the row is still current: the answer holds through 11:00 exactly.
    assert _page(db, "11:00")["valid_until"] == iso("11:00")
    assert _page(db, JUST_AFTER)["valid_until"] == iso("2026-01-06T11:05:00+00:00")
    # The answer at 10:30 and at valid_until is the same; a microsecond later it is not.
    assert _page(db, "10:30")["connections"] == _page(db, "11:00")["connections"]
    assert _page(db, "11:00")["connections"] != _page(db, JUST_AFTER)["connections"]
    # Only the rows served count: acme's one step is cin_work's.
    assert _page(db, "10:30", connector_id="acme")["valid_until"] == iso("2026-01-06T11:05:00+00:00")
    # Past every step nothing changes any more.
    assert _page(db, "2026-01-07T00:00:00+00:00")["valid_until"] is None


def test_page_input_is_checked(db: psycopg.Connection[Any]) -> None:
    _world(db)
    for bad in ({"limit": 0}, {"limit": -1}):
        try:
            _page(db, "12:00", **bad)  # type: ignore[arg-type]
        except psycopg.errors.InvalidParameterValue as error:
            assert "at least 1" in str(error)
        else:
            raise AssertionError(f"{bad} accepted")
    try:
        db.execute("SELECT * FROM refproj.connection_summaries_page(now(), NULL, 2, 'acme', NULL, NULL)")
    except psycopg.errors.InvalidParameterValue as error:
        assert "page key" in str(error)
    else:
        raise AssertionError("a partial key was accepted")


def _reads(db: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """Sequential scans of the JSON overview, scans of its overview-order index and index entries
    they returned, as counted so far by this backend."""
    row = db.execute(
        "SELECT pg_stat_get_xact_numscans('refproj.connection_summary_json'::regclass),"
        "       pg_stat_get_xact_numscans(index),"
        "       pg_stat_get_xact_tuples_returned(index)"
        " FROM CAST('refproj.connection_summary_json_overview_order_idx' AS regclass) AS index"
    ).fetchone()
    assert row is not None
    return row


def test_a_page_reads_through_the_overview_order_index(db: psycopg.Connection[Any]) -> None:
    """At 10,000 connections a page of 100 reads about 100 rows by index, not the list."""
    world = World(db)
    world.connector("bulk")
    db.execute(
        "INSERT INTO connector_instances (connector_instance_id, connector_id, created_at)"
        " SELECT 'bulk_' || lpad(g::text, 5, '0'), 'bulk', timestamptz '2026-01-01' + g * interval '1 minute'"
        " FROM generate_series(1, 10000) AS g"
    )
    world.refresh()
    db.execute("ANALYZE refproj.connection_summary_json")
    after: list[Any] | None = None
    # More than five calls: plpgsql may switch to a generic plan after five.
    for _ in range(8):
        # The backend's not yet flushed statistics count what the page read (no auto_explain,
        # which not every server build ships). They may hold earlier reads, hence the difference,
        # taken in one transaction so that no flush comes between.
        with db.transaction():
            before = _reads(db)
            page = _page(db, "12:00", limit=100, after=after)
            reads = [now - then for now, then in zip(_reads(db), before, strict=True)]
        assert page["row_count"] == 100
        after = page["last_key"]
        # One index scan that stops one row past the page; the list is never scanned.
        assert reads == [0, 1, 101]
    assert after == ["bulk", "2026-01-01T13:20:00+00:00", "bulk_00800"]


def test_a_refresh_notifies_its_as_of(db: psycopg.Connection[Any], db_url: str) -> None:
    world = World(db)
    world.siblings()
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN refproj_refreshed")
        world.refresh()
        notices = list(listener.notifies(timeout=5, stop_after=1))
        as_of = db.execute("SELECT to_json(as_of) #>> '{}' FROM refproj.projection_status()").fetchone()
        assert as_of is not None
        [notice] = notices
        payload = json.loads(notice.payload)
        assert payload["as_of"] == as_of[0]
        assert payload["refresh_ms"] > 0
        # A refresh that had nothing to do (only_if_changed, no write) sends nothing: the next
        # notification is the next refresh's.
        skipped = db.execute("SELECT refreshed FROM refproj.refresh_connection_summary(true)").fetchone()
        assert skipped == (False,)
        world.refresh()
        [notice] = list(listener.notifies(timeout=5, stop_after=1))
        as_of = db.execute("SELECT to_json(as_of) #>> '{}' FROM refproj.projection_status()").fetchone()
        assert as_of is not None
        assert json.loads(notice.payload)["as_of"] == as_of[0]

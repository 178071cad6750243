"""The helpers README.md calls inlined really are. With ``track_functions = 'all'`` PostgreSQL
counts every call of a SQL function that runs as a function of its own; a function inlined into
the query that uses it is never called, so it is never counted. Counting works the same on every
supported major (auto_explain, used before, is not in every build)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.world import World, at


def function_calls(db: psycopg.Connection[Any], sql: str) -> dict[str, int]:
    """How many times each refproj function was called while ``sql`` ran (functions never called
    are absent). The backend's counts not yet flushed to the statistics system, read just before
    and just after ``sql`` in one transaction (nothing is flushed inside one, so nothing waits for
    a flush), then rolled back."""
    count = "SELECT f.funcname, f.calls FROM pg_stat_xact_user_functions AS f WHERE f.schemaname = 'refproj'"
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL track_functions = 'all'")
        before = dict(db.execute(count).fetchall())
        db.execute(sql).fetchall()
        after = dict(db.execute(count).fetchall())
    return {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    w.connection("cin_third", created="09:10")
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    w.failed_run("run_bad", "cin_personal", "11:00", "11:05", "connector_exit")
    w.refresh()
    return w


# README.md "Decisions": plain SQL helpers without a pinned search_path, so PostgreSQL inlines them.
INLINED = [
    "jsonb_text",
    "run_brief",
    "run_match_token",
    "connection_match_tokens",
    "spine_run_key",
    "failed_like",
    "fresh_until",
    "freshness_status",
    "freshness_object",
    "health_at",
    "overview_row_ending",
    "overview_row_of",
    "jsonb_servable",
    "json_time",
    "json_time_text",
    "json_run",
    "served_row",
    "bigint_or_null",
    "rebuild_pending",
    "stored_run_facts",
    "summary_fields_json",
]


def test_overview_helpers_are_inlined(world: World) -> None:
    """Every helper README.md calls inlined is: none of them is called as a function of its own on
    the overview's and the detail's paths. (freshness_status was: it took its expensive argument
    twice, and PostgreSQL does not inline that; json_run was declared IMMUTABLE over a STABLE
    body, which PostgreSQL does not inline either.)"""
    db = world.db
    declared = db.execute(
        "SELECT p.proname FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " JOIN pg_language AS l ON l.oid = p.prolang"
        " WHERE n.nspname = 'refproj' AND p.proname = ANY (%s) AND l.lanname = 'sql' AND p.proconfig IS NULL",
        (INLINED,),
    ).fetchall()
    assert sorted(name for (name,) in declared) == sorted(INLINED)
    when = at("12:00").isoformat()
    for sql in (
        f"SELECT count(*) FROM refproj.connection_summaries('{when}')",
        "SELECT count(*) FROM refproj.connection_summary_json_rows()",
        "SELECT count(*) FROM refproj.run_facts_live",
        "SELECT count(*) FROM refproj.connection_evidence",
        f"SELECT length(refproj.connection_detail_json('cin_work', 20, '{when}'))",
        f"SELECT length(refproj.connection_summaries_json('{when}'))",
        f"SELECT length(connections) FROM refproj.connection_summaries_page('{when}', NULL, 2)",
        "SELECT * FROM refproj.projection_status()",
    ):
        calls = function_calls(db, sql)
        for name in INLINED:
            assert calls.get(name, 0) == 0, (sql, name, calls)

"""The helpers README.md calls inlined really are: auto_explain, logging nested statements, shows
no statement per row for them on the overview's paths."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.world import World, at


def nested_statements(db: psycopg.Connection[Any], sql: str) -> list[str]:
    """The query texts of the statements auto_explain logs below ``sql`` (its first lines)."""
    logged: list[str] = []
    db.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET client_min_messages = log")
    try:
        db.execute(sql).fetchall()
    finally:
        db.execute("RESET client_min_messages")
        db.execute("SET auto_explain.log_min_duration = -1")
    texts = []
    for message in logged:
        if "Query Text:" not in message:
            continue
        body = message.split("Query Text:", 1)[1].strip().splitlines()
        texts.append(" ".join(line.strip() for line in body[:2]))
    # The last one is the top-level statement itself.
    return texts[:-1]


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
    "fresh_until",
    "freshness_status",
    "freshness_object",
    "health_at",
    "overview_row_ending",
    "jsonb_servable",
    "json_time",
    "json_time_text",
    "json_run",
    "bigint_or_null",
]


def first_lines(db: psycopg.Connection[Any]) -> dict[str, str]:
    """Each claimed helper's body as auto_explain shows it (its first two lines, trimmed)."""
    rows = db.execute(
        "SELECT p.proname, p.prosrc FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'refproj' AND p.proname = ANY (%s)",
        (INLINED,),
    ).fetchall()
    assert sorted(name for name, _ in rows) == sorted(INLINED)
    out = {}
    for name, source in rows:
        lines = [line.strip() for line in source.strip().splitlines() if not line.strip().startswith("--")]
        out[name] = " ".join(lines[:2])
    return out


def test_overview_helpers_are_inlined(world: World) -> None:
    """Every helper README.md calls inlined is: auto_explain shows none of them running as a
    statement of its own on the overview's and the detail's paths. (freshness_status did: it
    took its expensive argument twice, and PostgreSQL does not inline that; json_run was declared
    IMMUTABLE over a STABLE body, which PostgreSQL does not inline either.)"""
    bodies = first_lines(world.db)
    version = int(world.db.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    when = at("12:00").isoformat()
    for sql in (
        f"SELECT count(*) FROM refproj.connection_summaries('{when}')",
        "SELECT count(*) FROM refproj.connection_summary_json_rows()",
        "SELECT count(*) FROM refproj.run_facts_live",
        "SELECT count(*) FROM refproj.connection_evidence",
        f"SELECT length(refproj.connection_detail_json('cin_work', 20, '{when}'))",
    ):
        nested = nested_statements(world.db, sql)
        for name, body in bodies.items():
            runs = sum(text.startswith(body[:60]) for text in nested)
            # Known and said in README: connection_detail (plpgsql) runs fresh_until once per call.
            allowed = 1 if (name, "connection_detail_json" in sql) == ("fresh_until", True) else 0
            # PostgreSQL 18 runs json_time as a statement inside summary_fields_json, the helper
            # that is deliberately not inlined (one call per row at refresh time; README): one run
            # per timestamp it writes, here 4; 15-17 inline it there too.
            if (name, "summary_json_rows" in sql, version >= 180000) == ("json_time", True, True):
                allowed = 4
            assert runs == allowed, (sql, name, runs)
    # What is deliberately not inlined: summary_fields_json pins TimeZone (one call per row when
    # the refresh serialises the overview, here three rows).
    rows = nested_statements(world.db, "SELECT count(*) FROM refproj.connection_summary_json_rows()")
    assert rows.count("SELECT left(to_json(f)::text, -1) FROM (") == 3

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


def test_overview_helpers_are_inlined(world: World) -> None:
    """freshness_status, fresh_until, freshness_object, health_at, json_run, json_time_text and
    overview_row_ending inline: connection_summaries() runs no statement per row. (They did not
    before: freshness_status took its expensive argument twice, json_run was declared IMMUTABLE
    over a STABLE body, and PostgreSQL refuses to inline either.)"""
    when = at("12:00").isoformat()
    assert nested_statements(world.db, f"SELECT count(*) FROM refproj.connection_summaries('{when}')") == [
        # the plpgsql function's one query
        "SELECT s.connector_instance_id, s.connection_id, s.connector_id, s.display_name,"
    ]
    # Serialising at refresh: one call per row of summary_fields_json, which pins TimeZone (a
    # SET clause forbids inlining, deliberately: the text must be UTC whoever refreshes).
    rows = nested_statements(world.db, "SELECT count(*) FROM refproj.connection_summary_json_rows()")
    # (auto_explain logs a statement when it ends: the function's own query comes last)
    assert rows[:-1] == ["SELECT left(to_json(f)::text, -1) FROM ("] * 3
    assert rows[-1].startswith("SELECT s.connector_instance_id, s.connector_id, s.created_at,")
    assert nested_statements(world.db, "SELECT count(*) FROM refproj.run_facts_live") == []
    assert nested_statements(world.db, "SELECT count(*) FROM refproj.connection_evidence") == []

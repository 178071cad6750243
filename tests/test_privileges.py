"""Least privilege and search_path hijacking.

Roles are cluster-wide, so each test creates roles named after its own database and drops them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from tests.world import World


@pytest.fixture
def roles(db: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    dbname = db.info.dbname
    names = {kind: f"{dbname}_{kind}" for kind in ("reader", "writer", "stranger", "attacker")}
    for name in names.values():
        db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    db.execute("SELECT refproj.grant_reader(%s)", (names["reader"],))
    db.execute(sql.SQL("GRANT INSERT ON spine_events TO {}").format(sql.Identifier(names["writer"])))
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(names["attacker"])))
    yield names
    db.execute("RESET ROLE")
    for name in names.values():
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def as_role(db: psycopg.Connection[Any], role: str) -> None:
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


def test_reader_reads_and_requests_refreshes(world: World, roles: dict[str, str]) -> None:
    db = world.db
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    as_role(db, roles["reader"])
    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (True,)
    assert db.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone() == (True,)
    assert world.overview()["cin_work"]["last_run"]["run_id"] == "run_bad"
    detail = world.detail("cin_work")
    assert [run["run_id"] for run in detail["recent_runs"]] == ["run_bad", "run_ok"]
    assert world.evidence("cin_work")["last_successful_run"]["run_id"] == "run_ok"
    assert db.execute("SELECT resolution FROM refproj.resolve_connection('acme')").fetchone() == (
        "ambiguous",
    )


def test_reader_detail_sees_writes_no_trigger_saw_but_reader_cannot_verify(
    world: World, roles: dict[str, str]
) -> None:
    """The detail's run-mark check reads what grant_reader grants; verify_projection() is an
    owner's check (a from-scratch computation), not granted."""
    db = world.db
    db.execute("ALTER TABLE spine_events DISABLE TRIGGER ALL")
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    db.execute("ALTER TABLE spine_events ENABLE TRIGGER ALL")
    as_role(db, roles["reader"])
    detail = world.detail("cin_work")
    assert detail is not None
    assert [run["run_id"] for run in detail["recent_runs"]] == ["run_bad", "run_ok"]
    with pytest.raises(
        errors.InsufficientPrivilege, match="permission denied for function verify_projection"
    ):
        db.execute("SELECT * FROM refproj.verify_projection()")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM spine_events",
        "SELECT * FROM connector_instances",
        "INSERT INTO spine_events (event_type) VALUES ('x')",
        "UPDATE connector_instances SET status = 'paused'",
        "DELETE FROM refproj.run_facts",
        "UPDATE refproj.projection_state SET refresh_count = 0",
        "DELETE FROM refproj.dirty_runs",
        "INSERT INTO refproj.source_writes VALUES ('1')",
        "SELECT * FROM refproj.run_events",
        "SELECT * FROM refproj.run_summaries",
        "SELECT refproj.grant_reader('postgres')",
        "SELECT refproj.note_source_write()",
    ],
)
def test_reader_cannot_touch_anything_else(world: World, roles: dict[str, str], statement: str) -> None:
    as_role(world.db, roles["reader"])
    with pytest.raises(errors.InsufficientPrivilege):
        world.db.execute(statement)


def test_reader_cannot_refresh_except_through_the_function(world: World, roles: dict[str, str]) -> None:
    as_role(world.db, roles["reader"])
    # PostgreSQL 17 added the MAINTAIN privilege (not granted to readers), which changed the wording
    # from "must be owner of" to "permission denied for".
    with pytest.raises(
        errors.InsufficientPrivilege,
        match=r"^(must be owner of|permission denied for) materialized view connection_summary$",
    ):
        world.db.execute("REFRESH MATERIALIZED VIEW refproj.connection_summary")


def test_writers_need_no_grant_on_the_projection(world: World, roles: dict[str, str]) -> None:
    db = world.db
    as_role(db, roles["writer"])
    db.execute(
        "INSERT INTO spine_events (event_type, status, source_kind, source_id, run_id, connector_instance_id)"
        " VALUES ('run.completed', 'succeeded', 'connector', 'acme', 'run_new', 'cin_personal')"
    )
    db.execute("RESET ROLE")
    assert db.execute("SELECT connector_id, run_id FROM refproj.dirty_runs").fetchall() == [
        ("acme", "run_new")
    ]
    world.refresh()
    assert world.overview()["cin_personal"]["last_run"]["run_id"] == "run_new"


def test_strangers_get_nothing(world: World, roles: dict[str, str]) -> None:
    as_role(world.db, roles["stranger"])
    for statement in (
        "SELECT * FROM refproj.refresh_connection_summary()",
        "SELECT * FROM refproj.connection_summaries()",
        "SELECT * FROM refproj.connection_summary",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            world.db.execute(statement)


def test_objects_planted_on_the_search_path_cannot_hijack(world: World, roles: dict[str, str]) -> None:
    db = world.db
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    as_role(db, roles["attacker"])
    # Shadows of built-ins the projection calls, in a schema the victim puts first.
    for signature, returns in [
        ("jsonb_typeof(jsonb)", "text"),
        ("starts_with(text, text)", "boolean"),
        ("nextval(regclass)", "bigint"),
        ("pg_advisory_xact_lock(bigint)", "void"),
        ("pg_visible_in_snapshot(xid8, pg_snapshot)", "boolean"),
        ("array_remove(anyarray, anyelement)", "anyarray"),
        ("to_jsonb(anyelement)", "jsonb"),
        ("now()", "timestamptz"),
    ]:
        db.execute(
            f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'hijacked'; END $$"
        )
    db.execute("RESET ROLE")
    as_role(db, roles["reader"])
    db.execute("SET search_path = public, pg_catalog")
    assert db.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone() == (True,)
    rows = db.execute(
        "SELECT connector_instance_id, last_run ->> 'run_id', health ->> 'state'"
        " FROM refproj.connection_summaries(pg_catalog.now())"
    ).fetchall()
    assert rows == [("cin_work", "run_bad", "failing"), ("cin_personal", None, "idle")]
    detail = db.execute(
        "SELECT recent_runs, unattributed_runs FROM refproj.connection_detail('cin_work')"
    ).fetchone()
    assert [run["run_id"] for run in detail[0]] == ["run_bad", "run_ok"]
    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (False,)
    db.execute("RESET search_path")


def test_only_the_refresh_and_the_write_triggers_are_security_definer(db: psycopg.Connection[Any]) -> None:
    definers = db.execute(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'refproj' AND p.prosecdef ORDER BY 1"
    ).fetchall()
    assert [name for (name,) in definers] == [
        "note_active_run_write",
        "note_source_write",
        "note_spine_write",
        "note_truncate",
        "refresh_connection_summary",
    ]
    unpinned = db.execute(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'refproj' AND NOT EXISTS ("
        "   SELECT 1 FROM unnest(p.proconfig) AS setting WHERE setting LIKE 'search_path=%') ORDER BY 1"
    ).fetchall()
    # Only the inlined helpers go without a pinned search_path (see README): pure expressions, and
    # stored_run_facts, whose one table is schema-qualified.
    assert [name for (name,) in unpinned] == [
        "bigint_or_null",
        "connection_match_tokens",
        "failed_like",
        "fresh_until",
        "freshness_object",
        "freshness_status",
        "health_at",
        "json_run",
        "json_seconds",
        "json_time",
        "json_time_text",
        "jsonb_servable",
        "jsonb_text",
        "newest_first",
        "overview_row_ending",
        "overview_row_of",
        "rebuild_pending",
        "run_brief",
        "run_match_token",
        "served_row",
        "spine_run_key",
        "stored_run_facts",
        "summary_fields_json",
    ]

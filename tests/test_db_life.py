"""Writes the triggers never see, and refreshes refproj did not run (issue 9, sections 1 and 2):
session_replication_role = replica, triggers a DBA disabled, a real data-only pg_dump/pg_restore
with --disable-triggers, and a DBA's REFRESH of one materialized view. ``refproj verify`` finds
what went unseen, ``refproj refresh --full`` repairs it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from refproj import AsyncProjection, Projection
from refproj.cli import main
from refproj.settings import SOURCE_TABLES
from tests.test_restore import dump_tools
from tests.world import World, iso, wait_for

VERIFY_DIFFERENCES = 11


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def cli(capsys: pytest.CaptureFixture[str], db_url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", db_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def brief(run_id: str, status: str, start: str, end: str, events: int, reason: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": status,
        "started_at": iso(start),
        "last_at": iso(end),
        "finished_at": iso(end),
        "failure_reason": reason,
        "event_count": events,
        "browser_surface_profile_key": None,
    }


OK_RUN = brief("run_ok", "succeeded", "11:00", "11:05", 2, None)
FAILED_RUN = brief("run_bad", "failed", "12:00", "12:10", 2, "token_expired")


def evidence(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    return row["last_run"], row["last_successful_run"], row["failures_since_last_success"]


def trigger_states(db: psycopg.Connection[Any]) -> set[str]:
    return {str(row[0]) for row in db.execute("SELECT DISTINCT enabled FROM refproj.source_triggers")}


# -- session_replication_role = replica --------------------------------------------------------------


def test_writes_in_the_replica_role_are_detected(world: World, db: psycopg.Connection[Any]) -> None:
    db.execute("SET session_replication_role = replica")
    world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
    db.execute("RESET session_replication_role")

    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (True,)
    assert evidence(world.detail("cin_work") or {}) == (FAILED_RUN, OK_RUN, 1)  # live, before a refresh
    assert world.refresh() is True
    assert evidence(world.overview()["cin_work"]) == (FAILED_RUN, OK_RUN, 1)
    assert evidence(world.detail("cin_work") or {}) == (FAILED_RUN, OK_RUN, 1)
    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (False,)


# -- triggers disabled by a DBA: verify finds it, refresh --full repairs it -----------------------------


def test_verify_lists_what_disabled_triggers_hid_and_a_full_refresh_repairs_it(
    world: World, db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, db_url, "verify") == (0, "", "")

    db.execute("ALTER TABLE spine_events DISABLE TRIGGER ALL")
    world.failed_run("run_bad", "cin_personal", "12:00", "12:10", "token_expired")
    assert cli(capsys, db_url, "verify") == (
        VERIFY_DIFFERENCES,
        "".join(
            f"public.spine_events.{name}: trigger disabled\n"
            for name in [
                "refproj_note_delete",
                "refproj_note_insert",
                "refproj_note_truncate",
                "refproj_note_update",
                "refproj_notify_source_write",
            ]
        )
        + "cin_personal: connection_summary differs (failures_since_last_success, last_run)\n",
        "",
    )
    db.execute("ALTER TABLE spine_events ENABLE TRIGGER ALL")

    # ENABLE TRIGGER ALL left refproj's triggers ordinary ('O'): the next refresh re-arms them
    # and, since writes may have gone unseen meanwhile, rebuilds whole.
    assert trigger_states(db) == {"A", "O"}
    assert db.execute("SELECT refproj.write_detection_intact()").fetchone() == (False,)
    assert world.overview()["cin_personal"]["last_run"] is None
    code, out, _ = cli(capsys, db_url, "refresh")
    assert (code, out.startswith("refreshed: overview as of ")) == (0, True)
    assert trigger_states(db) == {"A"}
    assert cli(capsys, db_url, "verify") == (0, "", "")
    assert evidence(world.overview()["cin_personal"]) == (FAILED_RUN, None, 1)

    # A DBA who re-arms the triggers by hand (ENABLE ALWAYS) leaves no trace: nothing was
    # detected, an ordinary refresh has nothing to do, verify lists the difference, --full repairs.
    db.execute("ALTER TABLE spine_events DISABLE TRIGGER ALL")
    world.failed_run("run_bad2", "cin_personal", "12:20", "12:30", "token_expired")
    for name in [
        "refproj_note_delete",
        "refproj_note_insert",
        "refproj_note_truncate",
        "refproj_note_update",
        "refproj_notify_source_write",
    ]:
        db.execute(f"ALTER TABLE spine_events ENABLE ALWAYS TRIGGER {name}")
    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (False,)
    code, out, _ = cli(capsys, db_url, "refresh")
    assert (code, out.startswith("refreshed: ")) == (0, True)
    assert cli(capsys, db_url, "verify") == (
        VERIFY_DIFFERENCES,
        "cin_personal: connection_summary differs (failures_since_last_success, last_run)\n",
        "",
    )

    code, out, err = cli(capsys, db_url, "refresh", "--full")
    assert (code, out.startswith("rebuilt: overview as of "), err) == (0, True, "")
    assert cli(capsys, db_url, "verify") == (0, "", "")
    row = world.overview()["cin_personal"]
    assert (row["last_run"]["run_id"], row["last_successful_run"], row["failures_since_last_success"]) == (
        "run_bad2",
        None,
        2,
    )
    assert evidence(world.overview()["cin_work"]) == (OK_RUN, OK_RUN, 0)


def test_the_detail_is_live_when_no_trigger_fired(world: World, db: psycopg.Connection[Any]) -> None:
    """While a write-detection trigger is not armed (disabled, or left ordinary by ENABLE
    TRIGGER ALL), the detail reads its connector's runs live, so it shows writes the triggers
    missed; the next refresh re-arms them and rebuilds, and the overview agrees again."""
    db.execute("ALTER TABLE spine_events DISABLE TRIGGER ALL")
    world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
    assert evidence(world.overview()["cin_work"]) == (OK_RUN, OK_RUN, 0)  # stored: not seen
    assert evidence(world.detail("cin_work") or {}) == (FAILED_RUN, OK_RUN, 1)
    db.execute("DELETE FROM spine_events WHERE run_id = 'run_ok'")
    assert evidence(world.detail("cin_work") or {}) == (FAILED_RUN, None, 1)
    db.execute("ALTER TABLE spine_events ENABLE TRIGGER ALL")
    detail = world.detail("cin_work") or {}
    assert evidence(detail) == (FAILED_RUN, None, 1)
    assert [run["run_id"] for run in detail["recent_runs"]] == ["run_bad"]
    world.refresh()
    assert db.execute("SELECT refproj.write_detection_intact()").fetchone() == (True,)
    assert evidence(world.overview()["cin_work"]) == (FAILED_RUN, None, 1)
    assert evidence(world.detail("cin_work") or {}) == (FAILED_RUN, None, 1)


def test_the_sql_function_and_the_python_method(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    db.execute("ALTER TABLE spine_events DISABLE TRIGGER refproj_note_insert")
    world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
    db.execute("ALTER TABLE spine_events ENABLE ALWAYS TRIGGER refproj_note_insert")
    rows = db.execute("SELECT to_jsonb(v) FROM refproj.verify_projection() AS v").fetchall()
    assert [row[0] for row in rows] == [
        {
            "connector_instance_id": "cin_work",
            "overview": "connection_summary",
            "difference": "differs",
            "fields": ["failures_since_last_success", "last_run"],
        }
    ]
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        assert proj.verify() == [row[0] for row in rows]
        assert proj.refresh().refreshed is True
        assert len(proj.verify()) == 1  # an ordinary refresh did not see it
        assert proj.refresh(full=True).refreshed is True
        assert proj.verify() == []
        assert evidence(proj.list()[0]) == (FAILED_RUN, OK_RUN, 1)


def test_the_async_twin_verifies_and_rebuilds(world: World, db: psycopg.Connection[Any], db_url: str) -> None:
    db.execute("ALTER TABLE spine_events DISABLE TRIGGER refproj_note_insert")
    world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
    db.execute("ALTER TABLE spine_events ENABLE ALWAYS TRIGGER refproj_note_insert")

    async def scenario() -> tuple[list[Any], bool, list[Any]]:
        async with AsyncProjection(db_url, staleness_bound=None, read_reuse=0) as proj:
            before = [(d["connector_instance_id"], d["fields"]) for d in await proj.verify()]
            rebuilt = (await proj.refresh(full=True)).refreshed
            return before, rebuilt, await proj.verify()

    assert asyncio.run(scenario()) == (
        [("cin_work", ["failures_since_last_success", "last_run"])],
        True,
        [],
    )


def test_a_full_request_is_not_satisfied_by_an_ordinary_refresh(
    world: World, db: psycopg.Connection[Any]
) -> None:
    """A full caller returns early only for a full rebuild that started after it arrived."""
    count = "SELECT refresh_count FROM refproj.projection_status()"
    before = db.execute(count).fetchone()
    assert before is not None
    # Each call is read-your-writes; the full ones run a rebuild each, whatever ran before them.
    for full in (False, True, False, True):
        row = db.execute(
            "SELECT refreshed FROM refproj.refresh_connection_summary(p_full => %s)", (full,)
        ).fetchone()
        assert row == (True,)
    assert db.execute(count).fetchone() == (before[0] + 4,)
    # As if an ordinary refresh that started after every caller so far had just committed: an
    # ordinary caller is satisfied by it, a full one is not and rebuilds.
    db.execute("UPDATE refproj.projection_state SET refresh_ticket = refresh_ticket + 1000000")
    assert db.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone() == (False,)
    assert db.execute(
        "SELECT refreshed FROM refproj.refresh_connection_summary(p_full => true)"
    ).fetchone() == (True,)
    # A watcher's p_only_if_changed call with nothing pending does nothing; a full one rebuilds.
    assert db.execute("SELECT refreshed FROM refproj.refresh_connection_summary(true)").fetchone() == (False,)
    assert db.execute("SELECT refreshed FROM refproj.refresh_connection_summary(true, true)").fetchone() == (
        True,
    )


# -- a data-only restore with triggers disabled ----------------------------------------------------------


@pytest.fixture
def restored_url(db: psycopg.Connection[Any], db_url: str) -> Iterator[str]:
    """Another database migrated like this test's (a clone of the migrated template), dropped after."""
    name = f"{db.info.dbname}_restored"
    (template,) = db.execute(
        "SELECT datname FROM pg_database WHERE datname = %s", (f"{db.info.dbname.split('_tmpl')[0]}_tmpl",)
    ).fetchone() or (None,)
    assert template is not None
    db.execute(f'DROP DATABASE IF EXISTS "{name}"')
    db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield make_url(db_url).set(database=name).render_as_string(hide_password=False)
    finally:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# refproj's triggers on the source tables, in byte order.
EVERY_TRIGGER = [
    f"{table}.{trigger}"
    for table, triggers in [
        ("connector_instances", ["refproj_note_source_write"]),
        ("connectors", ["refproj_note_source_write"]),
        (
            "controller_active_runs",
            ["refproj_note_delete", "refproj_note_insert", "refproj_note_truncate", "refproj_note_update"],
        ),
        ("retained_size_connection", ["refproj_note_source_write"]),
        ("retained_size_stream", ["refproj_note_source_write"]),
        (
            "spine_events",
            ["refproj_note_delete", "refproj_note_insert", "refproj_note_truncate", "refproj_note_update"],
        ),
    ]
    for trigger in [*triggers, "refproj_notify_source_write"]
]


def test_a_data_only_restore_with_disabled_triggers_is_found_and_repaired(
    world: World,
    db: psycopg.Connection[Any],
    db_url: str,
    restored_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    world.failed_run("run_bad", "cin_personal", "12:00", "12:10", "token_expired")
    world.refresh()
    dump = tmp_path / "source.dump"
    tables = [arg for table in SOURCE_TABLES for arg in ("--table", table)]
    # pg_dump refuses a newer server: the tools of the server's own major (Debian's or a wheel's).
    tools = dump_tools(db)
    assert tools is not None, "no pg_dump/pg_restore of this server's major version is installed"
    subprocess.run(
        [tools / "pg_dump", "--data-only", "--format=custom", *tables, "-f", str(dump), db_url], check=True
    )
    subprocess.run(
        [tools / "pg_restore", "--data-only", "--disable-triggers", "--dbname", restored_url, str(dump)],
        check=True,
    )

    with psycopg.connect(restored_url, autocommit=True) as restored:
        # Nothing fired: the restored database does not know it has data.
        assert restored.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (
            False,
        )
        # pg_restore ended with ENABLE TRIGGER ALL: refproj's triggers are ordinary ones now.
        assert cli(capsys, restored_url, "verify") == (
            VERIFY_DIFFERENCES,
            "".join(f"public.{trigger}: trigger not_always\n" for trigger in EVERY_TRIGGER)
            + "cin_personal: connection_summary missing\ncin_work: connection_summary missing\n",
            "",
        )
        code, out, _ = cli(capsys, restored_url, "refresh", "--full")
        assert (code, out.startswith("rebuilt: ")) == (0, True)
        assert cli(capsys, restored_url, "verify") == (0, "", "")
        assert trigger_states(restored) == {"A"}  # pg_restore's ENABLE TRIGGER ALL, undone
        served = restored.execute("SELECT refproj.connection_summaries_json(%s)", (world_clock(),)).fetchone()
    assert served is not None
    assert (
        served[0]
        == db.execute("SELECT refproj.connection_summaries_json(%s)", (world_clock(),)).fetchone()[0]
    )


def world_clock() -> Any:
    from tests.world import at

    return at("13:00")


# -- a DBA's REFRESH MATERIALIZED VIEW of one of the two views ------------------------------------------


def test_a_dba_refresh_of_the_typed_view_alone_is_reported_and_repaired_by_the_next_refresh(
    world: World, db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db.execute(
        "UPDATE connector_instances SET display_name = 'Work' WHERE connector_instance_id = 'cin_work'"
    )
    db.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary")

    assert cli(capsys, db_url, "verify") == (
        VERIFY_DIFFERENCES,
        "cin_work: connection_summary_json differs (stored_fields)\n",
        "refproj: writes are pending a refresh, so some differences may be only those;"
        " run `refproj refresh` and verify again\n",
    )
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        assert [row["display_name"] for row in proj.list()] == ["acme", "acme"]
        assert proj.status().source_changed is True  # so a watcher refreshes by itself
        assert proj.refresh().refreshed is True
        assert [row["display_name"] for row in proj.list()] == ["Work", "acme"]
    assert cli(capsys, db_url, "verify") == (0, "", "")


@pytest.mark.parametrize("view", ["connection_summary", "connection_summary_json"])
def test_a_dba_refresh_with_no_data_is_reported_and_repaired_by_the_next_refresh(
    world: World, db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str], view: str
) -> None:
    db.execute(f"REFRESH MATERIALIZED VIEW refproj.{view} WITH NO DATA")
    assert cli(capsys, db_url, "verify") == (
        VERIFY_DIFFERENCES,
        f"refproj.{view}: unpopulated\n",
        "refproj: writes are pending a refresh, so some differences may be only those;"
        " run `refproj refresh` and verify again\n",
    )
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        status = proj.status()
        assert (status.building, status.source_changed) == (True, True)  # so a watcher refreshes
        assert proj.refresh().refreshed is True
        assert proj.status().building is False
        assert sorted(row["connector_instance_id"] for row in proj.list()) == ["cin_personal", "cin_work"]
    assert evidence(world.overview()["cin_work"]) == (OK_RUN, OK_RUN, 0)
    assert cli(capsys, db_url, "verify") == (0, "", "")


def test_verify_never_blocks_writers_or_refreshes(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    """A transaction that ran verify_projection() and stays open holds only AccessShare locks:
    a writer and a refresh that may wait 200 ms for a lock both go through meanwhile."""
    with psycopg.connect(db_url) as verifier:
        assert verifier.execute("SELECT count(*) FROM refproj.verify_projection()").fetchone() == (0,)
        modes = verifier.execute(
            "SELECT DISTINCT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
        ).fetchall()
        assert modes == [("AccessShareLock",)]
        db.execute("SET lock_timeout = '200ms'")
        world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
        assert world.refresh() is True
        db.execute("RESET lock_timeout")
        verifier.rollback()
    assert evidence(world.overview()["cin_work"]) == (FAILED_RUN, OK_RUN, 1)


# -- a database default isolation level other than READ COMMITTED --------------------------------------


@pytest.mark.parametrize("level", ["serializable", "repeatable read"])
def test_every_refresh_works_under_any_default_isolation_of_the_database(
    level: str, world: World, db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refresh needs READ COMMITTED: every refproj transaction that refreshes sets it itself
    (first statement), so a DBA's ALTER DATABASE ... SET default_transaction_isolation breaks none."""
    name = psycopg.sql.Identifier(db.info.dbname)
    db.execute(
        psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = {}").format(
            name, psycopg.sql.Literal(level)
        )
    )
    with psycopg.connect(db_url) as fresh:
        assert fresh.execute("SHOW transaction_isolation").fetchone() == (level,)

    with Projection(db_url, staleness_bound=1.0, read_reuse=0.1) as proj:
        assert proj.refresh().refreshed is True
        assert proj.refresh(full=True).refreshed is True
        assert evidence(proj.get("cin_work") or {}) == (OK_RUN, OK_RUN, 0)
        # The watcher's refresh: a new run.failed reaches list() with no explicit refresh.
        world.failed_run("run_bad", "cin_work", "12:00", "12:10", "token_expired")
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"]["run_id"] == "run_bad" and r,
            what="the watcher to refresh under the database's default isolation",
        )
        assert evidence(rows[0]) == (FAILED_RUN, OK_RUN, 1)
        assert evidence(proj.get("cin_work") or {}) == (FAILED_RUN, OK_RUN, 1)

    code, out, err = cli(capsys, db_url, "refresh")
    assert (code, err, out.startswith("refreshed: overview as of ")) == (0, "", True)
    code, out, err = cli(capsys, db_url, "refresh", "--full")
    assert (code, err, out.startswith("rebuilt: overview as of ")) == (0, "", True)
    code, out, err = cli(capsys, db_url, "seed", "--replace")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("seeded profile tiny: 4 connectors, 8 connections,")
    assert out.splitlines()[1].startswith("refreshed: overview as of ")
    assert db.execute("SELECT count(*) FROM refproj.connection_summaries()").fetchone() == (7,)
    assert db.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (False,)
    assert cli(capsys, db_url, "verify") == (0, "", "")

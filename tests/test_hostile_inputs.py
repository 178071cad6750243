"""Inputs a user can get wrong, from a new user's, a DBA's and a backend developer's trial: each
example, with the exact value served, and the rule that one bad value never stops the refresh
for everyone else, never makes an application write fail, and never reaches a client as
something it cannot parse."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine

from refproj import Projection
from refproj.cli import main
from tests.test_inlining import INLINED
from tests.test_properties import incompressible
from tests.world import World, at

WHEN = at("13:00")


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    return w


@pytest.fixture
def proj(db_url: str) -> Iterator[Projection]:
    with Projection(db_url, staleness_bound=None, read_reuse=0) as projection:
        yield projection


def rows_by_id(proj: Projection) -> dict[str, dict[str, Any]]:
    return {row["connector_instance_id"]: row for row in proj.list(at=WHEN)}


# -- numbers a double cannot hold, sums a bigint cannot hold ---------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1e-400", 0.0), ("-1e-400", 86400.0), ("1e400", 86400.0), ("2.5e-7", 0.0), ("0.5", 0.5)],
)
def test_max_staleness_beyond_a_double(
    db: psycopg.Connection[Any], proj: Projection, raw: str, seconds: float
) -> None:
    """A manifest max_staleness_seconds of 1e-400 once failed every refresh ("out of range" on
    the cast to double). Below a double's precision it is 0 seconds; out of range, 24 hours."""
    db.execute(
        "INSERT INTO connectors (connector_id, manifest)"
        f" VALUES ('odd', '{{\"refresh_policy\": {{\"max_staleness_seconds\": {raw}}}}}')"
    )
    w = World(db)
    w.siblings()
    w.connection("odd_main", "odd")
    proj.refresh()
    rows = rows_by_id(proj)
    assert rows["odd_main"]["max_staleness"] == seconds
    assert rows["odd_main"]["freshness"]["max_staleness_seconds"] == seconds
    assert proj.get("odd_main", at=WHEN)["max_staleness"] == seconds
    assert rows["cin_work"]["max_staleness"] == 86400.0


def test_sizes_whose_sum_overflows_a_bigint(
    world: World, proj: Projection, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two stream rows of one connection with record_count 2**63 - 1 and 1 (and byte columns
    that overflow together) once failed every refresh: the sums are null ("too large"), the
    parts are served, and every other connection is unaffected."""
    big = 2**63 - 1
    world.db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count)"
        " VALUES ('cin_work', 'a', 'acme', %s), ('cin_work', 'b', 'acme', 1),"
        " ('cin_personal', 'a', 'acme', 7)",
        (big,),
    )
    world.db.execute(
        "INSERT INTO retained_size_connection (connector_instance_id, connector_id,"
        " current_record_json_bytes, record_history_json_bytes, blob_bytes)"
        " VALUES ('cin_work', 'acme', %s, %s, 0), ('cin_personal', 'acme', 1, 2, 3)",
        (big, big),
    )
    proj.refresh()
    work, personal = rows_by_id(proj)["cin_work"], rows_by_id(proj)["cin_personal"]
    assert (work["total_records"], work["stream_count"]) == (None, 2)
    assert work["retained_bytes"] == {
        "record_json_bytes": big,
        "record_changes_json_bytes": big,
        "blob_bytes": 0,
        "total_bytes": None,
    }
    assert work["total_retained_bytes"] is None
    assert (personal["total_records"], personal["total_retained_bytes"]) == (7, 6)
    detail = proj.get("cin_work", at=WHEN)
    assert (detail["total_records"], detail["total_retained_bytes"]) == (None, None)
    assert [s["record_count"] for s in detail["streams_retained"]] == [big, 1]

    url = proj.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    assert main(["--database-url", url, "list"]) == 0
    assert main(["--database-url", url, "show", "cin_work"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "\nrecords:                - in 2 streams\n" in out


# -- deep nesting ------------------------------------------------------------------------------------


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    ("known_gaps", "served", "facts"),
    [
        # once: refresh and list() fine, get() RecursionError, `refproj show` crashed
        (nested(2000), [], None),
        (nested(64), [], None),
        # one level deeper inside collection_facts' {"g": ...}: its leaf is at level 64
        (nested(63), json.loads(nested(63)), None),
        ("[1e400]", [], None),
        # through get() (orjson, as the overview) 10**308 reads as the float 1e308
        ("[1e308, 1e-400]", [1e308, 0.0], {"g": [1e308, 0.0]}),
    ],
    ids=["2000_levels", "64_levels", "63_levels", "1e400", "edges"],
)
def test_deep_or_huge_payload_values(
    world: World,
    proj: Projection,
    capsys: pytest.CaptureFixture[str],
    known_gaps: str,
    served: Any,
    facts: Any,
) -> None:
    data = f'{{"known_gaps": {known_gaps}, "collection_facts": {{"g": {known_gaps}}}}}'
    world.db.execute(
        "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
        " connector_instance_id, data) VALUES ('run.completed', %s, 'succeeded', 'connector', 'acme',"
        " 'run_deep', 'cin_personal', %s)",
        (at("12:00"), data),
    )
    proj.refresh()
    assert rows_by_id(proj)["cin_personal"]["last_run"]["run_id"] == "run_deep"
    detail = proj.get("cin_personal", at=WHEN)
    run = detail["recent_runs"][0]
    assert run["known_gaps"] == served
    assert run["collection_facts"] == facts

    url = proj.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    assert main(["--database-url", url, "show", "cin_personal", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out)["recent_runs"][0]["known_gaps"] == served


# -- long ids: no application write fails because of refproj -----------------------------------------


def test_long_ids_never_fail_an_application_write(world: World, proj: Projection) -> None:
    """A 2,900-character run id once made the application's own INSERT into spine_events fail
    ("index row size exceeds btree maximum"), because of the source/run summary index. Such a
    row is not a run event now (README); every write succeeds and the refresh serves the rest."""
    long_run, long_connector, long_kind = (
        incompressible(1, 2900),
        incompressible(2, 3000),
        incompressible(3, 2800),
    )
    db = world.db
    world.event(long_run, "run.completed", "12:00", status="failed", identity="cin_work")
    world.event("r_long_connector", "run.completed", "12:00", connector=long_connector)
    world.event("r_long_kind", "run.completed", "12:00", source_kind=long_kind)
    db.execute(
        "INSERT INTO controller_active_runs (connector_instance_id, connector_id, run_id, started_at)"
        " VALUES ('cin_x', %s, 'r_active', now())",
        (long_connector,),
    )
    db.execute("UPDATE spine_events SET run_id = %s WHERE run_id = 'run_ok'", (long_run + "x",))
    db.execute("UPDATE spine_events SET run_id = 'run_ok' WHERE run_id = %s", (long_run + "x",))
    proj.refresh()
    work = rows_by_id(proj)["cin_work"]
    assert work["last_run"]["run_id"] == "run_ok"
    assert work["health"] == {"state": "healthy", "reason": None}
    # The longest run id that still counts: 9 + 4 + 1,987 bytes.
    world.event("r" * 1987, "run.completed", "12:30", status="succeeded", identity="cin_work")
    world.event("r" * 1988, "run.completed", "12:40", status="succeeded", identity="cin_work")
    proj.refresh()
    assert proj.get("cin_work", at=WHEN)["last_run"]["run_id"] == "r" * 1987
    plan = "\n".join(
        row[0]
        for row in db.execute(
            "EXPLAIN SELECT * FROM refproj.run_summaries WHERE connector_id = 'acme' AND run_id = 'r1'"
        )
    )
    assert "spine_events_source_run_summary_idx" in plan


def test_a_2900_byte_run_id_is_written_and_the_refresh_serves_on_but_it_is_no_run_event(
    world: World, proj: Projection
) -> None:
    """README "Guarantees": a 2,900-byte run id is written by the application and the refresh
    keeps serving everyone, but by "Decisions" (over 2,000 bytes with the source ids) it is not a
    run event: a connection whose only run it is shows idle (never_run), overview and detail."""
    long_run = incompressible(5, 2900)
    world.connection("cin_long_run", created="09:10")
    world.succeeded_run(long_run, "cin_long_run", "12:00", "12:05")
    assert world.db.execute(
        "SELECT count(*), min(octet_length(run_id)) FROM spine_events WHERE run_id = %s", (long_run,)
    ).fetchone() == (2, 2900)
    proj.refresh()
    rows = rows_by_id(proj)
    assert sorted(rows) == ["cin_long_run", "cin_personal", "cin_work"]
    assert rows["cin_work"]["last_run"]["run_id"] == "run_ok"
    detail = proj.get("cin_long_run", at=WHEN)
    for served in (rows["cin_long_run"], detail):
        assert (served["last_run"], served["last_successful_run"], served["health"]) == (
            None,
            None,
            {"state": "idle", "reason": "never_run"},
        )
    assert (detail["recent_runs"], detail["unattributed_runs"]) == ([], 0)
    assert world.db.execute(
        "SELECT count(*) FROM refproj.run_events WHERE run_id = %s", (long_run,)
    ).fetchone() == (0,)


# The source tables' own keys (revision 0001's PRIMARY KEY and UNIQUE constraints): the
# application's contract, which bound a text key to a btree entry (2,704 bytes). README,
# "Guarantees": refproj's own indexes and triggers add no bound of their own.
SOURCE_KEYS = [
    ("connector_instances", "connector_instances_pkey", "PRIMARY KEY (connector_instance_id)"),
    ("connectors", "connectors_pkey", "PRIMARY KEY (connector_id)"),
    ("controller_active_runs", "controller_active_runs_pkey", "PRIMARY KEY (connector_instance_id)"),
    ("controller_active_runs", "controller_active_runs_run_id_key", "UNIQUE (run_id)"),
    ("retained_size_connection", "retained_size_connection_pkey", "PRIMARY KEY (connector_instance_id)"),
    ("retained_size_stream", "retained_size_stream_pkey", "PRIMARY KEY (connector_instance_id, stream)"),
    ("spine_events", "spine_events_event_seq_key", "UNIQUE (event_seq)"),
    ("spine_events", "spine_events_pkey", "PRIMARY KEY (event_id)"),
]


def test_only_the_source_tables_own_keys_bound_a_long_value(world: World) -> None:
    """A 3,000-byte (incompressible) key is refused by the source table's own key, and only
    there: the same value in every column refproj indexes or reads is written."""
    db = world.db
    assert (
        db.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint AS c
            WHERE c.contype IN ('p', 'u')
              AND c.conrelid = ANY (ARRAY['connectors', 'connector_instances', 'spine_events',
                  'controller_active_runs', 'retained_size_connection', 'retained_size_stream']::regclass[])
            ORDER BY 1, 2
            """
        ).fetchall()
        == SOURCE_KEYS
    )
    long = incompressible(31, 3000)
    refused = [
        ("connectors", "INSERT INTO connectors (connector_id) VALUES (%s)", (long,)),
        (
            "connector_instances",
            "INSERT INTO connector_instances (connector_instance_id, connector_id) VALUES (%s, 'acme')",
            (long,),
        ),
        ("spine_events", "INSERT INTO spine_events (event_id, event_type) VALUES (%s, 'x')", (long,)),
        (
            "controller_active_runs",
            "INSERT INTO controller_active_runs VALUES (%s, 'acme', 'r_long_key', now())",
            (long,),
        ),
        (
            "controller_active_runs_run_id_key",
            "INSERT INTO controller_active_runs VALUES ('cin_x', 'acme', %s, now())",
            (long,),
        ),
        ("retained_size_connection", "INSERT INTO retained_size_connection VALUES (%s, 'acme')", (long,)),
        (
            "retained_size_stream",
            "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id)"
            " VALUES ('cin_x', %s, 'acme')",
            (long,),
        ),
    ]
    for name, sql, params in refused:
        index = name if name.endswith("_key") else f"{name}_pkey"
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
            db.execute(sql, params)
        assert re.fullmatch(
            rf'index row size 30[0-9][0-9] exceeds btree version 4 maximum 2704 for index "{index}"',
            error.value.diag.message_primary or "",
        ), (name, error.value.diag.message_primary)
    # The columns refproj's own objects index or read take the same value: no refproj bound.
    world.connection("cin_long_connector", "acme")
    db.execute(
        "UPDATE connector_instances SET display_name = %s, source_binding = %s",
        (long, json.dumps({"k": long})),
    )
    world.event(long, "run.completed", "12:00", status="failed", identity="cin_work")
    db.execute("INSERT INTO retained_size_stream VALUES ('cin_work', 's', %s)", (long,))
    assert db.execute("SELECT count(*) FROM spine_events WHERE run_id = %s", (long,)).fetchone() == (1,)


def test_long_connector_and_connection_ids_never_fail_a_write_or_the_refresh(
    world: World, proj: Projection
) -> None:
    """Two ids longer than a btree entry together (random, incompressible): the application's
    INSERTs succeed (refproj's index on connector_instances is a hash index), the refresh succeeds
    (the stored overview's indexes leave such rows out of the order index), and every connection
    is served exactly, the long ones too, in overview order, by list(), get() and page by page.
    A connector id over 1,990 bytes cannot have run events (README), so its connection is idle."""
    db = world.db
    # 1,400 + 1,400 bytes: too long for one btree entry together, each fine alone.
    mid_connector, mid_connection = "long_a" + incompressible(21, 1394), "long_a" + incompressible(22, 1394)
    # 2,600 bytes each: the source tables' own primary keys still hold each one.
    big_connector, big_connection = "long_b" + incompressible(24, 2594), "long_b" + incompressible(25, 2594)
    long_name = incompressible(23, 3000)
    world.connector(mid_connector, display_name=long_name)
    world.connection(mid_connection, mid_connector, created="09:10", display_name=long_name)
    world.connector(big_connector)
    world.connection(big_connection, big_connector, created="09:20")
    world.succeeded_run("run_a", mid_connection, "11:00", "11:05", connector=mid_connector)
    world.succeeded_run("run_b", big_connection, "11:00", "11:05", connector=big_connector)
    db.execute("UPDATE connector_instances SET updated_at = updated_at + interval '1 second'")
    assert proj.refresh()

    rows = proj.list(at=WHEN)
    order = ["cin_work", "cin_personal", mid_connection, big_connection]
    assert [row["connector_instance_id"] for row in rows] == order
    served = rows_by_id(proj)
    assert served["cin_work"]["last_run"]["run_id"] == "run_ok"
    assert served["cin_personal"]["last_run"] is None
    mid = served[mid_connection]
    assert (mid["connector_id"], mid["display_name"], mid["connector_display_name"]) == (
        mid_connector,
        long_name,
        long_name,
    )
    assert mid["last_run"]["run_id"] == "run_a"
    assert mid["health"] == {"state": "healthy", "reason": None}
    big = served[big_connection]
    assert (big["connector_id"], big["display_name"], big["last_run"]) == (big_connector, big_connector, None)
    assert big["health"] == {"state": "idle", "reason": "never_run"}
    # The detail in SQL serves them, and so does get(): every id up to 4,096 bytes (README).
    details = db.execute(
        "SELECT d.connector_id, d.last_run ->> 'run_id' FROM unnest(%s::text[]) AS id"
        " CROSS JOIN LATERAL refproj.connection_detail(id, 5, %s) AS d",
        ([mid_connection, big_connection], WHEN),
    ).fetchall()
    assert details == [(mid_connector, "run_a"), (big_connector, None)]
    assert [proj.get(c, run_limit=5, at=WHEN)["connector_id"] for c in (mid_connection, big_connection)] == [
        mid_connector,
        big_connector,
    ]

    # Page by page (the HTTP keyset pages): every row once, in the same order, long keys included.
    seen: list[str] = []
    key: list[Any] = [None, None, None]
    while True:
        page = db.execute(
            "SELECT p.connections, p.last_key, p.more"
            " FROM refproj.connection_summaries_page(%s, NULL, 1, %s, %s, %s) AS p",
            (WHEN, *key),
        ).fetchone()
        assert page is not None
        seen += [row["connector_instance_id"] for row in json.loads(page[0])]
        if not page[2]:
            break
        key = page[1]
    assert seen == order
    whole = db.execute("SELECT refproj.connection_summaries_json(%s)", (WHEN,)).fetchone()
    assert whole is not None
    assert json.loads(whole[0]) == rows


# -- timestamps every client can parse ----------------------------------------------------------------


def test_every_served_timestamp_parses_or_is_null(
    db: psycopg.Connection[Any], proj: Projection, capsys: pytest.CaptureFixture[str]
) -> None:
    """`... BC`, five-digit years and infinity are legal timestamptz values but no ISO-8601
    parser reads them: served as null (the typed SQL columns keep them)."""
    w = World(db)
    w.connector("acme")
    w.connection("cin_inf", created="09:00")
    db.execute("UPDATE connector_instances SET created_at = 'infinity', revoked_at = '0044-03-15 BC'")
    w.connection("cin_far", created="09:05")
    db.execute(
        "UPDATE connector_instances SET created_at = '12026-01-01' WHERE connector_instance_id = 'cin_far'"
    )
    w.event("r_bc", "run.started", "0044-03-15T00:00:00+00:00", identity="cin_inf")
    db.execute("UPDATE spine_events SET occurred_at = '0044-03-15 BC' WHERE run_id = 'r_bc'")
    w.event("r_bc", "run.completed", "12:00", status="failed", identity="cin_inf")
    w.event("r_inf", "run.completed", "12:00", status="succeeded", identity="cin_far")
    db.execute("UPDATE spine_events SET occurred_at = 'infinity' WHERE run_id = 'r_inf'")
    db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, computed_at)"
        " VALUES ('cin_far', 's', 'acme', '-infinity')"
    )
    proj.refresh()

    def timestamps(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from timestamps(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from timestamps(v, key)
        elif key.endswith("_at"):
            yield key, value

    served = [*proj.list(at=WHEN), proj.get("cin_inf", at=WHEN), proj.get("cin_far", at=WHEN)]
    found = [pair for answer in served for pair in timestamps(answer)]
    assert len(found) > 20
    for _, value in found:
        assert value is None or datetime.fromisoformat(value).year >= 1
    inf, far = sorted(served[:2], key=lambda row: row["connector_instance_id"] != "cin_inf")
    assert (inf["created_at"], inf["revoked_at"], far["created_at"]) == (None, None, None)
    assert inf["last_run"]["started_at"] is None
    assert inf["last_run"]["last_at"] == "2026-01-05T12:00:00+00:00"
    assert far["last_successful_run"]["last_at"] is None
    assert far["freshness"]["captured_at"] is None
    # An infinitely recent success is current at any read time, whatever is served for it.
    assert far["freshness"]["status"] == "current"
    assert served[3]["streams_retained"][0]["computed_at"] is None
    url = proj.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    for argv in (["list"], ["show", "cin_inf"], ["show", "cin_far"]):
        assert main(["--database-url", url, *argv]) == 0
    assert capsys.readouterr().err == ""
    # The typed SQL keeps every value.
    assert db.execute(
        "SELECT created_at::text FROM refproj.connection_summaries(%s)"
        " WHERE connector_instance_id = 'cin_inf'",
        (WHEN,),
    ).fetchone() == ("infinity",)


def test_a_failure_at_minus_infinity_counts_when_nothing_succeeded(
    db: psycopg.Connection[Any], proj: Projection
) -> None:
    """DOMAIN.md section 4: with no success, every failure counts, whatever its time."""
    w = World(db)
    w.connector("acme")
    w.connection("cin_a", created="09:00")
    w.event("r_neg", "run.completed", "12:00", status="failed", identity="cin_a")
    db.execute("UPDATE spine_events SET occurred_at = '-infinity' WHERE run_id = 'r_neg'")
    proj.refresh()
    [row] = proj.list(at=WHEN)
    assert (row["last_run"]["run_id"], row["last_successful_run"], row["failures_since_last_success"]) == (
        "r_neg",
        None,
        1,
    )
    assert (proj.get("cin_a", at=WHEN) or {})["failures_since_last_success"] == 1
    assert db.execute(
        "SELECT failures_since_last_success FROM refproj.connection_evidence"
        " WHERE connector_instance_id = 'cin_a'"
    ).fetchone() == (1,)


# -- one answer whatever the session's settings ----------------------------------------------------------

SHARED = [
    "connector_instance_id",
    "created_at",
    "revoked_at",
    "total_records",
    "retained_bytes",
    "last_run",
    "last_successful_run",
    "max_staleness",
    "freshness",
    "health",
]


def answers(proj: Projection) -> list[tuple[str, str]]:
    """Every shared field of every overview row and its detail, as JSON text."""
    out = []
    for row in proj.list(at=WHEN):
        detail = proj.get(row["connector_instance_id"], at=WHEN)
        assert set(row) < set(detail)
        for key in row:
            assert json.dumps(row[key]) == json.dumps(detail[key]), key
        out += [(key, json.dumps(row[key])) for key in SHARED]
    return out


def test_list_and_get_agree_byte_for_byte_under_any_settings(
    world: World, db_url: str, db: psycopg.Connection[Any]
) -> None:
    """ALTER DATABASE ... SET IntervalStyle = 'iso_8601' once made max_staleness "01:00:00" in
    list() and "PT1H" in get(); an Engine in America/New_York gave created_at +00:00 in one and
    -05:00 in the other. Now both are written by the database in one style (UTC, seconds)."""
    world.connector("hourly", manifest={"refresh_policy": {"max_staleness_seconds": 3600}})
    world.connection("h_main", "hourly", revoked="10:30")
    world.failed_run("run_bad", "cin_personal", "12:00", "12:01", "connector_exit")
    db.execute(
        "INSERT INTO retained_size_connection (connector_instance_id, connector_id, blob_bytes)"
        " VALUES ('cin_work', 'acme', 5)"
    )
    with Projection(db_url, staleness_bound=None, read_reuse=0) as plain:
        plain.refresh()
        reference = answers(plain)
    assert ("max_staleness", "3600.0") in reference
    assert ("created_at", '"2026-01-05T09:00:00+00:00"') in reference

    name = db.info.dbname
    db.execute(
        f'ALTER DATABASE "{name}" SET "TimeZone" = \'America/New_York\';'
        f' ALTER DATABASE "{name}" SET "IntervalStyle" = \'iso_8601\';'
        f' ALTER DATABASE "{name}" SET "DateStyle" = \'SQL, DMY\''
    )
    try:
        with Projection(db_url, staleness_bound=None, read_reuse=0) as altered:
            assert answers(altered) == reference
        options = "-c TimeZone=Asia/Kolkata -c IntervalStyle=sql_standard -c DateStyle=German,YMD"
        engine = create_engine(
            db_url.replace("postgresql://", "postgresql+psycopg://"), connect_args={"options": options}
        )
        try:
            with Projection(engine, staleness_bound=None, read_reuse=0) as app:
                assert answers(app) == reference
                assert app.list().as_of.utcoffset() is not None
                assert app.list().as_of.utcoffset().total_seconds() == 0
                app.refresh()  # a refresh under these settings writes the same text
                assert answers(app) == reference
        finally:
            engine.dispose()
    finally:
        for setting in ("TimeZone", "IntervalStyle", "DateStyle"):
            db.execute(f'ALTER DATABASE "{name}" RESET "{setting}"')


# -- SQL functions refuse arguments that would silently answer wrong ------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM refproj.connection_summaries(NULL)", "the read time p_at must not be NULL"),
        ("SELECT refproj.connection_summaries_json(NULL)", "the read time p_at must not be NULL"),
        ("SELECT * FROM refproj.connection_detail('cin_work', -1)", "p_run_limit must be 0 or more, not -1"),
        (
            "SELECT * FROM refproj.connection_detail('cin_work', NULL)",
            "p_run_limit must be 0 or more, not NULL",
        ),
        (
            "SELECT * FROM refproj.connection_detail('cin_work', 20, NULL)",
            "the read time p_at must not be NULL",
        ),
        *[
            (
                f"SELECT * FROM refproj.refresh_connection_summary({args})",
                "^refproj: p_only_if_changed and p_full must not be NULL"
                rf" \(omit them for false\), not {shown}\n",
            )
            for args, shown in (
                ("NULL, NULL", "NULL, NULL"),
                ("NULL", "NULL, false"),
                ("p_full => NULL", "false, NULL"),
            )
        ],
    ],
)
def test_sql_functions_refuse_null_clocks_and_negative_limits(world: World, sql: str, message: str) -> None:
    """connection_summaries(NULL) once answered "stale" for everyone and connection_detail(x, -1)
    no runs; the same rule as the Python API: a clear error (invalid_parameter_value). A NULL
    argument of the refresh is refused before it takes its lock: nothing was refreshed."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        world.db.execute(sql)
    assert world.db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone() == (0,)


# Functions granted to readers that are helpers of the public ones, not API: README "Decisions"
# (the inlined helpers, which a NULL check would stop inlining, and those the detail and the
# refresh hand NULL arrays to). Every other refproj function is public and is walked below, so a
# new one is covered unless it is declared a helper here.
INTERNAL = {
    *INLINED,
    "summary_fields_json",
    "json_seconds",
    "newest_first",
    "run_evidence_of",
    "recent_runs_of",
    "run_facts_of",
    "require_read_time",
    "refuse_null_argument",
    "differing_fields",
    "sync_spine_partitions",
    "install_source_triggers",
}
# The arguments whose default is NULL: omitting them (NULL) is their documented meaning.
NULL_MEANS_OMITTED = [
    ("connection_summaries", "p_connector_id"),
    ("connection_summaries_json", "p_connector_id"),
    ("connection_summaries_page", "p_after_connector_id"),
    ("connection_summaries_page", "p_after_connector_instance_id"),
    ("connection_summaries_page", "p_after_created_at"),
    ("connection_summaries_page", "p_connector_id"),
    ("connection_summaries_page", "p_limit"),
]
_SAMPLE = {"text": "'cin_work'", "integer": "20", "timestamp with time zone": "now()", "boolean": "false"}


def test_every_public_sql_function_refuses_null_naming_the_argument(world: World) -> None:
    """connection_detail(NULL) answered no rows, connection_detail_json(NULL) NULL and
    connection_run_evidence(NULL) "no connection <NULL>": every public function, enumerated from
    the catalog, refuses a NULL argument with invalid_parameter_value naming it."""
    db = world.db
    functions = db.execute(
        "SELECT p.proname, pg_get_function_arguments(p.oid) FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'refproj' AND p.prorettype <> 'trigger'::regtype AND p.proname <> ALL (%s)"
        " ORDER BY 1",
        (sorted(INTERNAL),),
    ).fetchall()
    walked, omitted = [], []
    for name, arguments in functions:
        params = [
            re.fullmatch(r"(\w+) (.+?)(?: DEFAULT (.+))?", a).groups()  # type: ignore[union-attr]
            for a in arguments.split(", ")
            if a and not a.startswith("OUT ")
        ]
        for argument, _type, default in params:
            if default is not None and default.startswith("NULL"):
                omitted.append((name, argument))
                continue
            given = [
                f"{a} => NULL::{t}" if a == argument else f"{a} => {_SAMPLE[t]}"
                for a, t, d in params
                if a == argument or d is None
            ]
            if name == "grant_reader":
                given = ["p_role => NULL::text"]
            call = f"SELECT * FROM refproj.{name}({', '.join(given)})"
            with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
                db.execute(call)
            assert argument in str(refused.value), (call, str(refused.value))
            walked.append((name, argument))
    assert sorted(omitted) == sorted(NULL_MEANS_OMITTED)
    assert sorted(walked) == [
        ("connection_detail", "p_at"),
        ("connection_detail", "p_connection"),
        ("connection_detail", "p_run_limit"),
        ("connection_detail_json", "p_at"),
        ("connection_detail_json", "p_connection"),
        ("connection_detail_json", "p_run_limit"),
        ("connection_detail_parts", "p_at"),
        ("connection_detail_parts", "p_connection"),
        ("connection_detail_parts", "p_run_limit"),
        ("connection_run_evidence", "p_connector_instance_id"),
        ("connection_summaries", "p_at"),
        ("connection_summaries_json", "p_at"),
        ("connection_summaries_page", "p_at"),
        ("current_run_facts", "p_connector_id"),
        ("grant_reader", "p_role"),
        ("refresh_connection_summary", "p_full"),
        ("refresh_connection_summary", "p_only_if_changed"),
        ("resolve_connection", "p_connection"),
    ]
    # The messages, exactly, of the ones that answered something else before.
    for sql in (
        "SELECT * FROM refproj.connection_detail(NULL)",
        "SELECT refproj.connection_detail_json(NULL)",
        "SELECT * FROM refproj.connection_run_evidence(NULL)",
    ):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            db.execute(sql)
        assert str(refused.value).splitlines()[0] == (
            "refproj: the argument "
            + ("p_connector_instance_id" if "evidence" in sql else "p_connection")
            + " must not be NULL"
        )


def test_cli_escapes_control_characters_from_the_data(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Printed raw, these cleared the screen, retitled the terminal and split a table row.
    world.connector("esc", display_name="Esc\x1b]0;pwned\x07Conn")
    world.connection("cin_ctl", "esc", display_name="line1\nline2\x1b[31mRED\x9b\x7f")
    world.failed_run("run_ctl", "cin_ctl", "12:00", "12:01", "bad\x1b[2J\nnext", connector="esc")
    world.refresh()
    assert main(["--database-url", db_url, "list", "--connector", "esc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "cin_ctl     esc        active  failing (bad\\x1b[2J\\nnext)"
        "  run_ctl failed 2026-01-05 12:01  -             1      0"
    )
    assert len(lines) == 4  # header, one row, blank, summary
    assert main(["--database-url", db_url, "show", "cin_ctl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:5] == [
        "name:                   line1\\nline2\\x1b[31mRED\\x9b\\x7f",
        "connector:              esc (Esc\\x1b]0;pwned\\x07Conn)",
        "status:                 active",
        "health:                 failing (bad\\x1b[2J\\nnext)",
    ]
    assert lines[-1].endswith("  bad\\x1b[2J\\nnext")
    assert not any(ch in "".join(lines) for ch in "\x1b\x07\x9b\x7f")


def test_cli_escapes_format_characters_and_caps_table_cells(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # U+202E turned the rest of the row right to left, U+200B hid text, U+2028/U+2029 broke lines
    # in some terminals; one 100,000-character failure reason widened every row of the table.
    world.connector("fmt", display_name="Fmt")
    world.connection("cin_fmt", "fmt", display_name="a\u202eb\u2028c\u2029d\u200be")
    world.failed_run("run_fmt", "cin_fmt", "12:00", "12:01", "\u202e" + "x" * 100_000, connector="fmt")
    world.refresh()
    assert main(["--database-url", db_url, "list", "--connector", "fmt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    health = "failing (\\u202e" + "x" * 42 + "..."  # 60 characters, the escape counted as shown
    assert len(health) == 60
    assert (
        lines[1]
        == f"cin_fmt     fmt        active  {health}  run_fmt failed 2026-01-05 12:01  -             1      0"
    )
    assert main(["--database-url", db_url, "list", "--connector", "fmt", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["connections"]
    assert row["health"]["reason"] == "\u202e" + "x" * 100_000  # --json is complete
    assert main(["--database-url", db_url, "show", "cin_fmt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "name:                   a\\u202eb\\u2028c\\u2029d\\u200be"
    assert not any(ch in "".join(lines) for ch in "\u202e\u2028\u2029\u200b")

"""The workload generator (BENCHMARK.md "Workloads"): exact sizes, determinism, the realistic mix,
and the health states the demo set shows at SEED_BASE_TIME + 1 hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from refproj.seed import PROFILES, SEED_BASE_TIME, load_queries, parse_queries, seed
from refproj.settings import SOURCE_TABLES

TINY_COUNTS = {
    "connectors": 4,
    "connections": 8,
    "runs": 200,
    # 11 lifecycle events (8 created, 1 paused, 2 revoked), one long run of 5,100 events and
    # 1,933 events of the other 199 runs.
    "spine_events": 7044,
    "active_runs": 1,
    "retained_connections": 5,
    "retained_streams": 15,
}


# One row per run, straight from the spine: what it claims and how it ended.
RAW_RUNS = """
    SELECT
        e.source_id AS connector_id,
        e.run_id,
        count(*) AS events,
        bool_or(e.connector_instance_id IS NOT NULL) AS column_identity,
        bool_or(e.data ? 'connection_id') AS data_identity,
        max(e.data #>> '{browser_surface,browser_surface_profile_key}') AS profile_key,
        bool_or(e.event_type = 'run.started') AS started,
        bool_or(e.event_type IN ('run.completed', 'run.failed', 'run.browser_surface_failed')) AS terminal,
        bool_or(e.event_type = 'run.failed') AS failed,
        bool_or(e.event_type = 'run.browser_surface_failed') AS surface_failed,
        bool_or(a.run_id IS NOT NULL) AS active
    FROM spine_events AS e
    LEFT JOIN controller_active_runs AS a
        ON a.run_id = e.run_id
    WHERE e.run_id IS NOT NULL
      AND e.source_kind = 'connector'
    GROUP BY e.source_id, e.run_id
"""


def scalar(db: psycopg.Connection[Any], sql: str) -> Any:
    row = db.execute(sql).fetchone()
    assert row is not None
    return row[0]


def fingerprints(db: psycopg.Connection[Any]) -> dict[str, str]:
    """md5 of every source table's rows (all columns, as JSON in UTC), in key order."""
    keys = {
        "connectors": "connector_id",
        "connector_instances": "connector_instance_id",
        "spine_events": "event_seq",
        "controller_active_runs": "run_id",
        "retained_size_connection": "connector_instance_id",
        "retained_size_stream": "connector_instance_id, stream",
    }
    return {
        table: scalar(
            db, f"SELECT md5(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY {key})) FROM {table} AS t"
        )
        for table, key in keys.items()
    }


def reset(db: psycopg.Connection[Any]) -> None:
    db.execute(f"TRUNCATE {', '.join(SOURCE_TABLES)} RESTART IDENTITY")


def test_tiny_profile_has_the_documented_counts(db):
    messages: list[str] = []
    counts = seed(db, "tiny", progress=messages.append)

    assert counts == TINY_COUNTS
    tiny = PROFILES["tiny"]
    assert (counts["connectors"], counts["connections"], counts["runs"]) == (
        tiny.connectors,
        tiny.connections,
        tiny.runs,
    )
    assert messages == [
        "connectors and connections: 4 / 8",
        "planning 200 runs",
        "spine events for 200 runs (about 2,000)",
        "active runs and retained sizes",
        "analyzing and counting",
    ]
    # The identity sequence continues after the seeded event_seq values.
    assert scalar(db, "SELECT max(event_seq) FROM spine_events") == 7044
    seq = scalar(
        db,
        "INSERT INTO spine_events (event_type) VALUES ('probe') RETURNING event_seq",
    )
    assert seq == 7045


def test_same_seed_gives_the_same_rows_and_another_seed_other_rows(db):
    seed(db, "tiny", seed=0)
    first = fingerprints(db)

    # Again with the same seed, from a session in another time zone.
    reset(db)
    db.execute("SET TimeZone = 'America/New_York'")
    seed(db, "tiny", seed=0)
    db.execute("SET TimeZone = 'UTC'")
    assert fingerprints(db) == first

    reset(db)
    other_counts = seed(db, "tiny", seed=1)
    other = fingerprints(db)
    assert other["spine_events"] != first["spine_events"]
    assert other["retained_size_stream"] != first["retained_size_stream"]
    # The structure stays: same connectors, connections and run count.
    assert other["connectors"] == first["connectors"]
    assert (other_counts["connectors"], other_counts["connections"], other_counts["runs"]) == (4, 8, 200)


def test_tiny_mix_has_every_kind_of_real_data(db):
    seed(db, "tiny")

    # Sibling browser connections of amazon, keyed by the manifest's profile key base.
    profile_key_base = "SELECT manifest #>> '{capabilities,browser_surface,profile_key}' FROM connectors"
    assert scalar(db, profile_key_base + " WHERE connector_id = 'amazon'") == "amazon-shop"
    keyed = db.execute(
        f"SELECT profile_key, count(*) FROM ({RAW_RUNS}) AS r WHERE profile_key IS NOT NULL"
        " GROUP BY profile_key ORDER BY profile_key"
    ).fetchall()
    assert keyed == [
        ("amazon-shop:amazon_personal", 44),
        ("amazon-shop:amazon_setup", 1),
        ("amazon-shop:amazon_work", 55),
    ]

    # Identity: mostly the column, some only data.connection_id, and legacy runs with none, all
    # of the latter on github, whose only active connection is github_personal.
    identities = db.execute(
        f"""SELECT connector_id,
                   count(*) FILTER (WHERE column_identity AND NOT data_identity),
                   count(*) FILTER (WHERE data_identity AND NOT column_identity),
                   count(*) FILTER (WHERE NOT column_identity AND NOT data_identity)
            FROM ({RAW_RUNS}) AS r GROUP BY connector_id ORDER BY connector_id"""
    ).fetchall()
    assert identities == [("amazon", 100, 0, 0), ("chase", 41, 14, 0), ("github", 23, 0, 22)]
    legacy = db.execute(
        "SELECT attributed_to, count(*) FROM refproj.attributed_runs"
        " WHERE connector_instance_id IS NULL GROUP BY attributed_to"
    ).fetchall()
    assert legacy == [("github_personal", 22)]

    # One run in progress, known to the controller; six orphaned run.started runs.
    active = db.execute(
        "SELECT a.connector_instance_id, a.connector_id, a.run_id = s.run_id, a.started_at = s.started_at"
        " FROM controller_active_runs AS a"
        " JOIN refproj.run_summaries AS s ON s.status = 'in_progress'"
    ).fetchall()
    assert active == [("github_personal", "github", True, True)]
    orphaned = f"SELECT count(*) FROM ({RAW_RUNS}) AS r WHERE started AND NOT terminal AND NOT active"
    assert scalar(db, orphaned) == 6
    orphaned_summaries = (
        "SELECT count(*) FROM refproj.run_summaries WHERE failure_reason = 'orphaned_started_run'"
    )
    assert scalar(db, orphaned_summaries) == 6

    # Nine surface failures, none followed by run.failed.
    assert db.execute(
        f"SELECT count(*) FILTER (WHERE surface_failed), count(*) FILTER (WHERE surface_failed AND failed)"
        f" FROM ({RAW_RUNS}) AS r"
    ).fetchone() == (9, 0)
    assert scalar(db, "SELECT count(*) FROM refproj.run_summaries WHERE status = 'surface_failed'") == 9

    # Exactly one long run.
    long_runs = db.execute(
        f"SELECT connector_id, events FROM ({RAW_RUNS}) AS r WHERE events >= 5000"
    ).fetchall()
    assert long_runs == [("amazon", 5100)]

    # Draft, paused, revoked and a retired setup attempt.
    assert db.execute(
        "SELECT status, source_binding ->> 'kind', count(*) FROM connector_instances"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall() == [
        ("active", "browser_profile", 2),
        ("active", "device_pairing", 1),
        ("active", "oauth", 1),
        ("draft", "device_pairing", 1),
        ("paused", "oauth", 1),
        ("revoked", "browser_enrollment_shell", 1),
        ("revoked", "oauth", 1),
    ]

    # Retained sizes: every manifest stream of the five connections that collected, and a
    # connection row that sums them.
    assert db.execute(
        """SELECT s.connector_instance_id, count(*), bool_and(s.stream = ANY (v.streams))
           FROM retained_size_stream AS s
           JOIN refproj.connection_evidence AS v USING (connector_instance_id)
           GROUP BY s.connector_instance_id ORDER BY 1"""
    ).fetchall() == [
        ("amazon_personal", 3, True),
        ("amazon_work", 3, True),
        ("chase_joint", 3, True),
        ("chase_savings", 3, True),
        ("github_personal", 3, True),
    ]
    summed = """
        SELECT count(*)
        FROM retained_size_connection AS c
        WHERE c.record_count = (SELECT sum(s.record_count)
                                FROM retained_size_stream AS s
                                WHERE s.connector_instance_id = c.connector_instance_id)"""
    assert scalar(db, summed) == 5


def test_overview_at_base_plus_one_hour_shows_every_health_state(db):
    seed(db, "tiny")
    db.execute("SELECT * FROM refproj.refresh_connection_summary()")

    rows = db.execute(
        "SELECT connector_instance_id, health ->> 'state', health ->> 'reason', last_run ->> 'status'"
        " FROM refproj.connection_summaries(%s)",
        (SEED_BASE_TIME + timedelta(hours=1),),
    ).fetchall()

    assert rows == [
        ("amazon_personal", "failing", "password_changed", "surface_failed"),
        ("amazon_work", "healthy", None, "succeeded"),
        ("chase_joint", "revoked", "connection_revoked", "failed"),
        ("chase_savings", "paused", "connection_paused", "succeeded"),
        ("github_personal", "running", "run_in_progress", "in_progress"),
        ("laptop_work", "idle", "never_run", None),
        ("laptop_home", "setup", "connection_draft", None),
    ]
    # One row per visible connection: all but the retired setup attempt.
    visible = scalar(
        db, "SELECT count(*) FROM connector_instances WHERE connector_instance_id <> 'amazon_setup'"
    )
    assert visible == len(rows) == 7


def test_history_factor_multiplies_runs_but_not_connections(db):
    counts = seed(db, "tiny", history_factor=3)

    sizes = (counts["connectors"], counts["connections"], counts["runs"], counts["active_runs"])
    assert sizes == (4, 8, 600, 1)
    per_connection = db.execute(
        "SELECT attributed_to, count(*) FROM refproj.attributed_runs GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert per_connection == [
        ("amazon_personal", 133),
        ("amazon_setup", 1),
        ("amazon_work", 166),
        ("chase_joint", 66),
        ("chase_savings", 100),
        ("github_personal", 134),
    ]
    assert scalar(db, f"SELECT count(*) FROM ({RAW_RUNS}) AS r WHERE events >= 5000") == 1


def test_refuses_a_database_that_holds_connectors(db):
    seed(db, "tiny")
    before = fingerprints(db)

    with pytest.raises(ValueError, match="already hold connectors"):
        seed(db, "tiny", seed=7)

    assert fingerprints(db) == before


def test_rejects_unknown_profile_and_bad_factor(db):
    with pytest.raises(ValueError, match="unknown profile 'XL'; choose one of tiny, S, M, L"):
        seed(db, "XL")
    with pytest.raises(ValueError, match="history factor must be a positive number, not 0"):
        seed(db, "tiny", history_factor=0)
    with pytest.raises(ValueError, match="history factor must be a positive number, not nan"):
        seed(db, "tiny", history_factor=float("nan"))
    assert scalar(db, "SELECT count(*) FROM connectors") == 0


def test_seed_sql_is_named_queries_with_descriptions():
    queries = load_queries()
    assert list(queries)[:3] == ["prepare_transaction", "create_seed_unit", "create_seed_pick"]
    assert all(sql and not sql.startswith("--") for sql in queries.values())

    text = "-- preamble\n-- name: one\n-- the first\nSELECT 1;\n-- name: two\n-- the second\nSELECT 2;\n"
    assert parse_queries(text) == {"one": "SELECT 1;", "two": "SELECT 2;"}
    with pytest.raises(ValueError, match="query 'one' has no one-line description"):
        parse_queries("-- name: one\nSELECT 1;\n")
    with pytest.raises(ValueError, match="query 'one' is defined twice"):
        parse_queries("-- name: one\n-- a\nSELECT 1;\n-- name: one\n-- b\nSELECT 2;\n")


def test_a_failed_replace_keeps_every_row(db, db_url, capsys):
    """`seed --replace` with a bad argument, or failing midway, leaves the data exactly as it was
    (it once emptied every source table, then failed validation: 7,044 spine events became 0)."""
    from refproj.cli import main

    seed(db, "tiny")
    before = fingerprints(db)
    assert scalar(db, "SELECT count(*) FROM spine_events") == 7044
    for argv in (["--history-factor", "0"], ["--history-factor", "1e308"], ["--profile", "XL"]):
        assert main(["--database-url", db_url, "seed", "--replace", *argv]) == 7
        assert capsys.readouterr().err.count("\n") == 1
        assert fingerprints(db) == before

    # A failure after the wipe (here a statement timeout while inserting) rolls the wipe back too.
    with psycopg.connect(db_url) as conn:
        conn.execute("SET statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            seed(conn, "S", replace=True)
    assert fingerprints(db) == before


def test_replace_with_an_application_foreign_key_names_it_and_changes_nothing(db, db_url, capsys):
    """TRUNCATE cannot empty a table another table's foreign key references (SQLSTATE 0A000):
    --replace says which table references which, before writing anything (exit 7)."""
    from refproj.cli import main

    seed(db, "tiny")
    db.execute(
        "CREATE TABLE app_jobs (id int PRIMARY KEY,"
        " connection text CONSTRAINT app_jobs_connection_fkey REFERENCES connector_instances)"
    )
    db.execute("INSERT INTO app_jobs SELECT 1, min(connector_instance_id) FROM connector_instances")
    before = fingerprints(db)
    assert main(["--database-url", db_url, "seed", "--replace", "--no-refresh"]) == 7
    assert capsys.readouterr() == (
        "",
        "refproj: --replace cannot empty connector_instances: the application's table app_jobs"
        " references it (foreign key app_jobs_connection_fkey); empty that table or drop its"
        " foreign key first, or seed another database\n",
    )
    assert fingerprints(db) == before
    assert scalar(db, "SELECT count(*) FROM app_jobs") == 1
    # Once the foreign key is dropped, --replace empties and seeds.
    db.execute("ALTER TABLE app_jobs DROP CONSTRAINT app_jobs_connection_fkey")
    assert main(["--database-url", db_url, "seed", "--replace", "--no-refresh"]) == 0


def test_cli_seed_refreshes_and_hints_replace(db, db_url, capsys):
    from refproj.cli import main

    assert main(["--database-url", db_url, "seed"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[0].startswith("seeded profile tiny: 4 connectors, 8 connections,")
    assert out.splitlines()[1].startswith("refreshed: overview as of ")
    assert scalar(db, "SELECT count(*) FROM refproj.connection_summaries()") == 7
    assert scalar(db, "SELECT source_changed FROM refproj.projection_status()") is False

    assert main(["--database-url", db_url, "seed"]) == 7
    assert capsys.readouterr() == (
        "",
        "refproj: the source tables already hold connectors; seed an empty database,"
        " or pass --replace to empty them first\n",
    )
    assert main(["--database-url", db_url, "seed", "--replace", "--seed", "3", "--no-refresh"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1] == "the overview is not refreshed: run `refproj refresh`"
    assert scalar(db, "SELECT source_changed FROM refproj.projection_status()") is True

"""Installing beside an application: its own tables, rows and Alembic history stay untouched.

The databases here are prepared the way an application prepares its own: its tables (the source
tables with its own extra columns and types, plus tables refproj never heard of), its rows, and
its own ``alembic_version`` at one of its revisions. refproj then migrates, serves, and is
removed again.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from refproj import ForeignObjectsInSchema, InvalidArgument, Projection, SourceTablesIncompatible, migrate
from refproj._resources import read_sql
from refproj.cli import main
from refproj.progress import Reporter
from refproj.seed import SEED_BASE_TIME, seed
from refproj.settings import SOURCE_TABLES
from tests.test_incremental import plan
from tests.test_migrations import ALEMBIC, alembic_version, catalog, catalog_rows
from tests.world import backends_waiting, wait_for

APP_SCHEMA = """
CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('app_0042');
CREATE TABLE app_users (id serial PRIMARY KEY, email text NOT NULL);
INSERT INTO app_users (email) VALUES ('a@example.org'), ('b@example.org');
CREATE TABLE connectors (
    connector_id text PRIMARY KEY,
    display_name text,
    manifest jsonb NOT NULL DEFAULT '{}',
    owner_team text
);
CREATE TABLE connector_instances (
    connector_instance_id text PRIMARY KEY,
    connector_id text NOT NULL REFERENCES connectors,
    display_name text,
    status text NOT NULL DEFAULT 'active',
    source_kind text NOT NULL DEFAULT 'account',
    source_binding jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
-- The application's own index, named as revision 0001 names refproj's: revision 0005 leaves it.
CREATE INDEX connector_instances_connector_idx
    ON connector_instances (connector_id, created_at, connector_instance_id);
CREATE TABLE spine_events (
    event_seq bigserial PRIMARY KEY,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'ok',
    source_kind text,
    source_id text,
    run_id text,
    connector_instance_id text,
    data jsonb NOT NULL DEFAULT '{}',
    tenant text
);
CREATE TABLE controller_active_runs (
    connector_instance_id text PRIMARY KEY, connector_id text NOT NULL, run_id text NOT NULL,
    started_at timestamptz NOT NULL);
CREATE TABLE retained_size_connection (
    connector_instance_id text PRIMARY KEY, connector_id text NOT NULL,
    record_count bigint NOT NULL DEFAULT 0, current_record_json_bytes bigint NOT NULL DEFAULT 0,
    record_history_json_bytes bigint NOT NULL DEFAULT 0,
    blob_bytes bigint NOT NULL DEFAULT 0, computed_at timestamptz);
CREATE TABLE retained_size_stream (
    connector_instance_id text NOT NULL, stream text NOT NULL, connector_id text NOT NULL,
    record_count bigint NOT NULL DEFAULT 0, current_record_json_bytes bigint NOT NULL DEFAULT 0,
    record_history_json_bytes bigint NOT NULL DEFAULT 0, blob_bytes bigint NOT NULL DEFAULT 0,
    computed_at timestamptz, PRIMARY KEY (connector_instance_id, stream));
INSERT INTO connectors (connector_id, display_name) VALUES ('acme', 'Acme');
INSERT INTO connector_instances (connector_instance_id, connector_id, created_at)
VALUES ('cin_work', 'acme', '2026-01-05 09:00+00');
INSERT INTO spine_events
    (event_type, occurred_at, status, source_kind, source_id, run_id, connector_instance_id)
VALUES ('run.started', '2026-01-05 10:00+00', 'ok', 'connector', 'acme', 'run_1', 'cin_work'),
       ('run.completed', '2026-01-05 10:05+00', 'succeeded', 'connector', 'acme', 'run_1', 'cin_work');
"""

APP_TABLES = ["app_users", *SOURCE_TABLES]


def application_state(url: str) -> dict[str, Any]:
    """Every application table's rows, columns and indexes, and its Alembic revision."""
    state: dict[str, Any] = {"alembic_version": alembic_version_of_app(url)}
    with psycopg.connect(url) as conn:
        for table in APP_TABLES:
            state[table] = {
                "rows": conn.execute(f"SELECT to_jsonb(t) FROM {table} AS t ORDER BY 1").fetchall(),
                "columns": conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                    " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    (table,),
                ).fetchall(),
                "indexes": conn.execute(
                    "SELECT indexrelid::regclass::text FROM pg_index"
                    " WHERE indrelid = %s::regclass ORDER BY 1",
                    (table,),
                ).fetchall(),
                "comment": conn.execute(
                    "SELECT obj_description(%s::regclass, 'pg_class')", (table,)
                ).fetchone(),
            }
    return state


def alembic_version_of_app(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def refproj_objects(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return {
            "schema": conn.execute("SELECT to_regnamespace('refproj') IS NOT NULL").fetchone(),
            "version_table": conn.execute(
                "SELECT to_regclass('refproj_alembic_version') IS NOT NULL"
            ).fetchone(),
            "index": conn.execute(
                "SELECT to_regclass('spine_events_source_run_summary_idx') IS NOT NULL"
            ).fetchone(),
            "triggers": conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'refproj%'"
            ).fetchone(),
        }


@pytest.fixture
def app_url(empty_db_url: str) -> str:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(APP_SCHEMA)
    return empty_db_url


def test_beside_an_application_upgrade_use_downgrade(app_url: str) -> None:
    before = application_state(app_url)
    migrate.upgrade(app_url)
    assert alembic_version(app_url) == ["0005"]
    assert alembic_version_of_app(app_url) == ["app_0042"]
    with psycopg.connect(app_url) as conn:
        # An index of the application's named like refproj's stays as the application made it.
        assert conn.execute(
            "SELECT split_part(pg_get_indexdef('connector_instances_connector_idx'::regclass), ' USING ', 2)"
        ).fetchone() == ("btree (connector_id, created_at, connector_instance_id)",)
    # The history is there but not yet built: the migration only asked for the first build.
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT count(*) FROM refproj.run_facts").fetchone() == (0,)
        assert conn.execute(
            "SELECT relispopulated FROM pg_class WHERE oid = 'refproj.connection_summary'::regclass"
        ).fetchone() == (False,)

    with Projection(app_url, staleness_bound=None, read_reuse=0) as proj:
        building = proj.list()
        assert (list(building), building.building) == ([], True)
        assert building.envelope()["building"] is True
        assert proj.status().building is True
        # The live detail answers meanwhile.
        assert proj.get("cin_work")["last_successful_run"]["run_id"] == "run_1"
        proj.refresh()
        built = proj.list()
        assert built.building is False
        assert [(r["connector_instance_id"], r["last_run"]["run_id"]) for r in built] == [
            ("cin_work", "run_1")
        ]
        with psycopg.connect(app_url, autocommit=True) as app:
            app.execute(
                "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
                " connector_instance_id, tenant) VALUES ('run.failed', '2026-01-05 11:00+00', 'failed',"
                " 'connector', 'acme', 'run_2', 'cin_work', 't1')"
            )
        proj.refresh()
        assert proj.list()[0]["last_run"]["run_id"] == "run_2"
    used = application_state(app_url)

    migrate.downgrade(app_url)
    assert refproj_objects(app_url) == {
        "schema": (False,),
        "version_table": (False,),
        "index": (False,),
        "triggers": (0,),
    }
    after = application_state(app_url)
    assert after["alembic_version"] == ["app_0042"]
    # Every row the application had when refproj was removed, including its write meanwhile.
    assert {t: after[t]["rows"] for t in APP_TABLES} == {t: used[t]["rows"] for t in APP_TABLES}
    assert len(after["spine_events"]["rows"]) == 3
    assert after["spine_events"]["rows"][:2] == before["spine_events"]["rows"]
    # Columns, indexes and comments as before refproj came.
    for table in APP_TABLES:
        assert {k: v for k, v in after[table].items() if k != "rows"} == {
            k: v for k, v in before[table].items() if k != "rows"
        }, table
    assert {t: after[t]["rows"] for t in APP_TABLES if t != "spine_events"} == {
        t: before[t]["rows"] for t in APP_TABLES if t != "spine_events"
    }


def test_a_missing_column_is_named_and_nothing_is_installed(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(app_url) as conn:
        conn.execute("ALTER TABLE spine_events DROP COLUMN run_id")
    before = catalog(app_url)
    with pytest.raises(SourceTablesIncompatible) as error:
        migrate.upgrade(app_url)
    assert str(error.value) == "spine_events.run_id is missing; refproj needs it as text"
    assert catalog(app_url) == before

    # Every mismatch at once, in one line: the operator fixes them in one go.
    with psycopg.connect(app_url) as conn:
        conn.execute("ALTER TABLE spine_events ADD COLUMN run_id numeric")
        conn.execute("ALTER TABLE spine_events ALTER COLUMN data TYPE json")
        conn.execute("ALTER TABLE connectors DROP COLUMN display_name")
    assert main(["--database-url", app_url, "migrate"]) == 10
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "refproj: connectors.display_name is missing; refproj needs it as text."
        " spine_events.run_id has type numeric; refproj needs it as text."
        " spine_events.data has type json; refproj needs it as jsonb (json is parsed again at every"
        " read; ALTER TABLE spine_events ALTER COLUMN data TYPE jsonb converts it)\n",
    )
    assert alembic_version(app_url) == []
    assert alembic_version_of_app(app_url) == ["app_0042"]


def alembic_cli(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ALEMBIC, *arguments],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )


def test_alembic_cli_names_an_incompatible_column_in_one_line(app_url: str) -> None:
    with psycopg.connect(app_url) as conn:
        conn.execute("ALTER TABLE spine_events DROP COLUMN run_id")
    result = alembic_cli(app_url, "upgrade", "head")
    # Alembic prints a CommandError as one FAILED: line (stdout) and logs it (stderr), exit 255.
    line = "refproj: spine_events.run_id is missing; refproj needs it as text"
    assert result.returncode == 255
    assert result.stdout == f"FAILED: {line}\n"
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"ERROR [alembic.util.messaging] {line}"
    assert alembic_version(app_url) == []


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("garbage", "refproj: not a database URL: 'garbage'"),
        (
            "postgresql://me:secret@127.0.0.1/db%00x",
            "refproj: the database URL must not contain NUL (%00): 'postgresql://me:***@127.0.0.1/db%00x'",
        ),
        (
            "postgresql://me:secret@127.0.0.1:1/nowhere",
            "refproj: database unreachable at postgresql://me:***@127.0.0.1:1/nowhere: connection failed:"
            ' connection to server at "127.0.0.1", port 1 failed: Connection refused',
        ),
    ],
)
def test_alembic_cli_with_an_unusable_database_is_one_failed_line(url: str, line: str) -> None:
    result = subprocess.run(
        [*ALEMBIC, "current"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (255, f"FAILED: {line}\n")
    assert result.stderr == f"ERROR [alembic.util.messaging] {line}\n"


# The columns refproj reads with the types SQLAlchemy's String(n) and Integer give them.
NARROW_COLUMNS = {
    "connectors": {"connector_id": "varchar(64)", "display_name": "varchar(200)"},
    "connector_instances": {
        "connector_instance_id": "varchar(64)",
        "connector_id": "varchar(64)",
        "display_name": "varchar(200)",
        "status": "varchar(16)",
        "source_kind": "varchar(32)",
    },
    "spine_events": {
        "event_seq": "smallint",
        "event_type": "varchar(64)",
        "status": "varchar(32)",
        "source_kind": "varchar(32)",
        "source_id": "varchar(64)",
        "run_id": "varchar(64)",
        "connector_instance_id": "varchar(64)",
    },
    "controller_active_runs": {
        "connector_instance_id": "varchar(64)",
        "connector_id": "varchar(64)",
        "run_id": "varchar(64)",
    },
    "retained_size_connection": {
        "connector_instance_id": "varchar(64)",
        "connector_id": "varchar(64)",
        "record_count": "integer",
    },
    "retained_size_stream": {
        "connector_instance_id": "varchar(64)",
        "stream": "varchar(64)",
        "connector_id": "varchar(64)",
        "record_count": "integer",
    },
}


def test_varchar_and_integer_columns_serve_what_text_and_bigint_serve(db_url: str, empty_db_url: str) -> None:
    """An application whose tables came from SQLAlchemy String(n)/Integer: adopted as they are,
    and every scenario of the seed serves exactly what a text/bigint install serves, from the
    first build and after an incremental refresh."""
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(read_sql("0001_source_tables.sql"))
        for table, columns in NARROW_COLUMNS.items():
            conn.execute(f"COMMENT ON TABLE {table} IS NULL")
            for column, type_name in columns.items():
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_name}")
    narrow_catalog = catalog(empty_db_url)
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'spine_events'::regclass AND attname IN ('event_seq', 'run_id')"
            " ORDER BY attname"
        ).fetchall() == [("smallint",), ("character varying(64)",)]
    served = []
    for url in (db_url, empty_db_url):
        with psycopg.connect(url) as conn:
            seed(conn, "tiny")
        projection = Projection(url)
        try:
            projection.refresh()
            at = SEED_BASE_TIME + timedelta(hours=1)
            first = (projection.list_json(at=at).json_text, projection.get_json("amazon_work", at=at))
            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id,"
                    " run_id, connector_instance_id)"
                    " VALUES ('run.started', %s, 'ok', 'connector', 'amazon', 'run_late', 'amazon_work')",
                    (SEED_BASE_TIME,),
                )
            projection.refresh()
            served.append(
                (*first, projection.list_json(at=at).json_text, projection.get_json("amazon_work", at=at))
            )
        finally:
            projection.close()
    assert served[0] == served[1]
    assert served[0][0] != served[0][2]
    # Adopted, so downgrade leaves the application's tables exactly as they were.
    migrate.downgrade(empty_db_url)
    assert catalog(empty_db_url) == narrow_catalog


def test_an_application_revision_named_like_refproj_is_left_alone(empty_db_url: str) -> None:
    """An application whose own history is at "0003" (no refproj schema): not refproj's."""
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0003')")
    migrate.upgrade(empty_db_url)
    assert alembic_version_of_app(empty_db_url) == ["0003"]
    assert alembic_version(empty_db_url) == ["0005"]
    migrate.downgrade(empty_db_url)
    assert alembic_version_of_app(empty_db_url) == ["0003"]
    assert alembic_version(empty_db_url) == []


def untouched(url: str) -> dict[str, Any]:
    """The application's ``alembic_version`` and tables down to each row's version (ctid, xmin)
    and each table's oid and file node (a re-creation or rewrite changes them); for
    ``alembic_version`` its catalog row's version too (any ALTER changes it; the source tables'
    change when refproj's triggers go on)."""
    with psycopg.connect(url) as conn:
        return {
            table: (
                conn.execute(
                    "SELECT oid::int8, relfilenode::int8,"
                    " CASE WHEN relname = 'alembic_version' THEN xmin::text END"
                    " FROM pg_class WHERE oid = %s::regclass",
                    (table,),
                ).fetchone(),
                conn.execute(
                    f"SELECT ctid::text, xmin::text, to_jsonb(t) FROM {table} AS t ORDER BY 1"
                ).fetchall(),
            )
            for table in ["alembic_version", *APP_TABLES]
        }


LEFT_ALONE = (
    "refproj: left alembic_version (revision {revision}) alone: {why}; refproj keeps its own history in"
    " refproj_alembic_version. If an install of refproj made before refproj_alembic_version wrote it,"
    " drop it once this run is done"
)


NOT_PROVEN = (
    "the objects refproj creates at that revision are missing (or not refproj's), so it is the application's"
)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]


def test_an_application_at_revision_0001_keeps_its_history_and_gets_refproj(
    app_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The application's own revision is "0001" and its tables are the source tables: nothing
    tells that from an install of refproj at 0001, so alembic_version is left as it is."""
    with psycopg.connect(app_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    before = untouched(app_url)
    assert main(["--database-url", app_url, "migrate", "--no-build"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("migrated ") and out.endswith(" to head\n")
    why = "nothing tells refproj's revision 0001 from the application's"
    line = LEFT_ALONE.format(revision="0001", why=why)
    assert (err, warnings_of(caplog)) == (f"{line}\n", [line])
    assert untouched(app_url) == before
    assert alembic_version(app_url) == ["0005"]
    assert refproj_objects(app_url) == {
        "schema": (True,),
        "version_table": (True,),
        "index": (True,),
        "triggers": (18,),
    }


def test_a_refproj_revision_without_refproj_objects_is_the_applications(
    app_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """alembic_version at "0005" and an empty schema refproj a DBA created beforehand: that is not
    an install of refproj; refproj installs into the empty schema and leaves the history alone."""
    with psycopg.connect(app_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0005'")
        conn.execute("CREATE SCHEMA refproj")
    before = untouched(app_url)
    assert main(["--database-url", app_url, "migrate"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("migrated ")
    assert out.splitlines()[1].startswith("built the overview in ")
    why = NOT_PROVEN
    line = LEFT_ALONE.format(revision="0005", why=why)
    assert (err, warnings_of(caplog)) == (f"{line}\n", [line])
    assert untouched(app_url) == before
    assert alembic_version(app_url) == ["0005"]
    with Projection(app_url, staleness_bound=None) as proj:
        assert [r["connector_instance_id"] for r in proj.list()] == ["cin_work"]


def test_an_index_named_like_refproj_s_does_not_prove_revision_0002(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The application at its own "0002" with its own index named as refproj's summary index:
    taken for an old install, its alembic_version was dropped, the index replaced and its tables
    commented. Only refproj's definition of that index proves revision 0002."""
    with psycopg.connect(app_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
        conn.execute("CREATE INDEX spine_events_source_run_summary_idx ON spine_events (run_id)")
    before = (untouched(app_url), application_state(app_url))
    assert main(["--database-url", app_url, "migrate", "--no-build"]) == 0
    why = NOT_PROVEN
    assert capsys.readouterr()[1] == LEFT_ALONE.format(revision="0002", why=why) + "\n"
    assert (untouched(app_url), application_state(app_url)) == before
    with psycopg.connect(app_url) as conn:
        assert conn.execute(
            "SELECT pg_get_indexdef('spine_events_source_run_summary_idx'::regclass)"
        ).fetchone() == (
            "CREATE INDEX spine_events_source_run_summary_idx ON public.spine_events USING btree (run_id)",
        )
    assert alembic_version(app_url) == ["0005"]


@pytest.mark.parametrize("legacy_revision", ["0002", "0003", "0004"])
def test_an_install_with_the_old_version_table_moves_to_its_own(
    empty_db_url: str, legacy_revision: str
) -> None:
    url = empty_db_url
    migrate.upgrade(url, legacy_revision)
    # What installs made before refproj had its own version table look like.
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE refproj_alembic_version RENAME TO alembic_version")
        conn.execute(
            "ALTER TABLE alembic_version RENAME CONSTRAINT refproj_alembic_version_pkc TO alembic_version_pkc"
        )
        conn.execute(
            "DO $$ DECLARE t text; BEGIN FOR t IN SELECT unnest(ARRAY['connectors',"
            " 'connector_instances', 'spine_events', 'controller_active_runs',"
            " 'retained_size_connection', 'retained_size_stream']) LOOP"
            " EXECUTE format('COMMENT ON TABLE %I IS NULL', t); END LOOP; END $$"
        )
    migrate.upgrade(url)
    assert alembic_version(url) == ["0005"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)
        # Its key named as on a fresh install (Alembic's <table>_pkc), so the schemas are equal.
        # The key only: PostgreSQL 18 lists NOT NULL constraints here too, and this simulated old
        # table (renamed from a new one) kept the new table's NOT NULL constraint name.
        assert conn.execute(
            "SELECT conname FROM pg_constraint"
            " WHERE conrelid = 'refproj_alembic_version'::regclass AND contype = 'p'"
        ).fetchall() == [("refproj_alembic_version_pkc",)]
    # The moved install's tables count as refproj's: an empty one goes with downgrade base.
    migrate.downgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('spine_events')").fetchone() == (None,)


def refused(objects: str) -> str:
    return (
        f"schema refproj holds or is used by what refproj did not create: {objects}; migrating would"
        " drop it with the schema: move it out of schema refproj (or drop it) and run again"
    )


def test_downgrade_refuses_to_drop_what_refproj_did_not_create(empty_db_url: str) -> None:
    """An application's table in schema refproj, and its view over refproj's overview: DROP
    SCHEMA ... CASCADE would take both. Refused before anything changes, then fine once moved."""
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE refproj.app_owned (id int PRIMARY KEY)")
        conn.execute("INSERT INTO refproj.app_owned VALUES (7)")
        conn.execute("CREATE VIEW app_overview AS SELECT count(*) AS n FROM refproj.connection_summary")
    before = catalog_rows(url)
    with pytest.raises(ForeignObjectsInSchema) as error:
        migrate.downgrade(url)
    assert str(error.value) == refused("table refproj.app_owned, view app_overview")
    assert catalog_rows(url) == before
    assert alembic_version(url) == ["0005"]
    result = alembic_cli(url, "downgrade", "base")
    assert (result.returncode, result.stdout) == (
        255,
        f"FAILED: refproj: {refused('table refproj.app_owned, view app_overview')}\n",
    )
    assert "Traceback" not in result.stderr
    assert catalog_rows(url) == before
    # An upgrade at head refuses too: the next revision would re-create the schema.
    assert main(["--database-url", url, "migrate", "--no-build"]) == 15
    assert catalog_rows(url) == before

    with psycopg.connect(url) as conn:
        conn.execute("DROP VIEW app_overview")
        conn.execute("ALTER TABLE refproj.app_owned SET SCHEMA public")
    migrate.downgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM app_owned").fetchall() == [(7,)]
        assert conn.execute("SELECT to_regnamespace('refproj')").fetchone() == (None,)


def test_migrate_refuses_a_schema_refproj_holding_somebody_elses_objects(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema refproj created beforehand is used when empty (see
    test_a_refproj_revision_without_refproj_objects_is_the_applications); holding another's
    table, it is refused: revision 0004 re-creates the schema whole."""
    with psycopg.connect(app_url) as conn:
        conn.execute("CREATE SCHEMA refproj")
        conn.execute("CREATE TABLE refproj.app_owned (id int)")
    before = catalog_rows(app_url)
    state = untouched(app_url)
    assert main(["--database-url", app_url, "migrate"]) == 15
    assert capsys.readouterr() == ("", f"refproj: {refused('table refproj.app_owned')}\n")
    assert (catalog_rows(app_url), untouched(app_url)) == (before, state)
    assert alembic_version(app_url) == []


def schema_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of schema refproj with its rows."""
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'refproj' ORDER BY 1")
        return {
            table: conn.execute(f"SELECT to_jsonb(t)::text FROM refproj.{table} AS t ORDER BY 1").fetchall()
            for (table,) in tables.fetchall()
        }


APP_DATA = "CREATE TABLE refproj.app_data (v int); INSERT INTO refproj.app_data VALUES (1);"


@pytest.mark.parametrize(
    ("app_revision", "objects", "found"),
    [
        (
            "app_0042",
            "CREATE TABLE refproj.projection_state (x int); INSERT INTO refproj.projection_state VALUES (3);",
            "table refproj.app_data, table refproj.projection_state",
        ),
        (
            "0005",
            "CREATE TABLE refproj.projection_state (x int); INSERT INTO refproj.projection_state VALUES (3);",
            "table refproj.app_data, table refproj.projection_state",
        ),
        (
            "app_0042",
            "CREATE FUNCTION refproj.installed_objects() RETURNS int LANGUAGE sql RETURN 1;",
            "function refproj.installed_objects(), table refproj.app_data",
        ),
    ],
)
def test_objects_named_as_refproj_s_prove_nothing(
    app_url: str, capsys: pytest.CaptureFixture[str], app_revision: str, objects: str, found: str
) -> None:
    """A name is no proof: the application's refproj.projection_state (and its row) made the
    check skip the schema, and migrate dropped refproj.app_data with its rows; its
    installed_objects() returning int was exit 1 (TypeError). With the application's history at
    "0005", the "left alone" warning is moot: the refusal alone."""
    with psycopg.connect(app_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (app_revision,))
        conn.execute(f"CREATE SCHEMA refproj; {objects} {APP_DATA}")
    before = (catalog_rows(app_url), untouched(app_url), schema_rows(app_url))
    assert main(["--database-url", app_url, "migrate"]) == 15
    assert capsys.readouterr() == ("", f"refproj: {refused(found)}\n")
    assert (catalog_rows(app_url), untouched(app_url), schema_rows(app_url)) == before
    assert schema_rows(app_url)["app_data"] == [('{"v": 1}',)]
    assert alembic_version(app_url) == []


@pytest.mark.parametrize(
    "function",
    [
        "CREATE FUNCTION refproj.installed_objects() RETURNS int LANGUAGE sql RETURN 1",
        # refproj's shape without refproj's comment: the application's, never called.
        "CREATE FUNCTION refproj.installed_objects() RETURNS text[] LANGUAGE sql"
        " RETURN ARRAY['table refproj.app_data']",
    ],
)
def test_an_installed_objects_of_the_application_is_foreign(
    empty_db_url: str, capsys: pytest.CaptureFixture[str], function: str
) -> None:
    """Before: exit 1, "unexpected error (TypeError ...)" (or the application's list trusted)."""
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("DROP FUNCTION refproj.installed_objects()")
        conn.execute(function)
        conn.execute(APP_DATA)
    before = catalog_rows(url)
    assert main(["--database-url", url, "migrate", "--no-build"]) == 15
    out, err = capsys.readouterr()
    assert (out, err.count("\n")) == ("", 1)
    assert err.startswith("refproj: schema refproj holds or is used by what refproj did not create: ")
    assert "function refproj.installed_objects(), " in err and "table refproj.app_data, " in err
    assert catalog_rows(url) == before
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM refproj.app_data").fetchall() == [(1,)]
    assert alembic_version(url) == ["0005"]


def test_a_refusal_after_the_left_alone_warning_is_one_line(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(app_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
        conn.execute("ALTER TABLE spine_events DROP COLUMN run_id")
    assert main(["--database-url", app_url, "migrate"]) == 10
    assert capsys.readouterr() == ("", "refproj: spine_events.run_id is missing; refproj needs it as text\n")
    assert (alembic_version(app_url), alembic_version_of_app(app_url)) == ([], ["0001"])


def test_downgrade_keeps_tables_holding_rows_unless_asked(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO connectors (connector_id) VALUES ('acme'), ('globex')")
        conn.execute(
            "INSERT INTO spine_events (event_type, source_kind, source_id, run_id)"
            " VALUES ('run.started', 'connector', 'acme', 'r1')"
        )
    caplog.clear()
    migrate.downgrade(url)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.levelname == "WARNING"] == [
        (
            "alembic.env",
            "WARNING",
            "refproj: keeping table spine_events (it holds rows; -x drop_source_tables=true drops it)",
        ),
        (
            "alembic.env",
            "WARNING",
            "refproj: keeping table connectors (it holds rows; -x drop_source_tables=true drops it)",
        ),
    ]
    with psycopg.connect(url) as conn:
        kept = conn.execute(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
        ).fetchall()
        assert kept == [("connectors",), ("spine_events",)]
        assert conn.execute("SELECT count(*) FROM spine_events").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)
    assert refproj_objects(url)["schema"] == (False,)

    # Up again (the kept tables adopted), then down asking for the tables too.
    migrate.upgrade(url)
    migrate.downgrade(url, drop_source_tables=True)
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone() == (0,)


@pytest.mark.parametrize("value", ["false", "yes", 1, None])
def test_downgrade_refuses_a_drop_source_tables_that_is_not_a_bool(empty_db_url: str, value: object) -> None:
    """The string "false" is truthy: taken as a yes, it dropped tables holding rows."""
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO connectors (connector_id) VALUES ('acme')")
    before = catalog_rows(url)
    with pytest.raises(InvalidArgument) as error:
        migrate.downgrade(url, drop_source_tables=value)  # type: ignore[arg-type]
    assert str(error.value) == f"drop_source_tables must be True or False, not {value!r}"
    assert (catalog_rows(url), alembic_version(url)) == (before, ["0005"])


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (
            ["drop_source_tables=yes"],
            "write -x drop_source_tables=true or drop_source_tables=false, not -x 'drop_source_tables=yes'",
        ),
        (
            ["drop_source_tables"],
            "write -x drop_source_tables=true or drop_source_tables=false, not -x 'drop_source_tables'",
        ),
        (
            ["drop_source_table=true"],
            "unknown option -x 'drop_source_table=true'; refproj reads -x drop_source_tables=",
        ),
        (
            ["drop_source_tables=false", "drop_source_tables=true"],
            "-x drop_source_tables given more than once",
        ),
    ],
)
def test_alembic_cli_refuses_a_bad_x_option_before_any_revision_runs(
    empty_db_url: str, options: list[str], why: str
) -> None:
    """Checked in 0001's downgrade only, a bad value failed after 0005..0002 were committed."""
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO connectors (connector_id) VALUES ('acme')")
    before = catalog_rows(url)
    arguments = [argument for option in options for argument in ("-x", option)]
    result = alembic_cli(url, *arguments, "downgrade", "base")
    assert (result.returncode, result.stdout) == (255, f"FAILED: refproj: {why}\n")
    assert "Traceback" not in result.stderr
    assert (catalog_rows(url), alembic_version(url)) == (before, ["0005"])


def test_first_build_never_blocks_writers_and_readers_are_told(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.upgrade(app_url)
    # Hold the build where it starts writing run_facts, to look at the database while it runs.
    holder = psycopg.connect(app_url)
    holder.execute("LOCK TABLE refproj.run_facts IN SHARE MODE")
    watcher = psycopg.connect(app_url, autocommit=True)
    outcome: dict[str, Any] = {}

    def build() -> None:
        with Projection(app_url, staleness_bound=None, refresh_timeout=0) as proj:
            outcome["result"] = proj.refresh()

    builder = threading.Thread(target=build)
    builder.start()
    try:
        wait_for(
            lambda: backends_waiting(watcher, "Lock", "%refresh_connection_summary%"),
            what="the build waiting for its view",
        )
        with psycopg.connect(app_url, autocommit=True) as app:
            app.execute("SET lock_timeout = '2s'")
            app.execute(
                "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
                " connector_instance_id) VALUES ('run.started', '2026-01-05 12:00+00', 'ok',"
                " 'connector', 'acme', 'run_3', 'cin_work')"
            )
            app.execute("UPDATE connectors SET display_name = 'Acme Corp'")
        assert main(["--database-url", app_url, "list", "--json"]) == 0
        out, _ = capsys.readouterr()
        assert '"building": true' in out and '"connections": []' in out
        assert main(["--database-url", app_url, "list"]) == 0
        out, _ = capsys.readouterr()
        assert out.startswith("the overview is still being built")
        assert main(["--database-url", app_url, "status"]) == 0
        out, _ = capsys.readouterr()
        assert "building:       yes" in out
    finally:
        holder.close()
        watcher.close()
        builder.join(timeout=60)
    assert outcome["result"].refreshed is True
    with Projection(app_url, staleness_bound=None) as proj:
        proj.refresh()
        rows = proj.list()
    assert (rows.building, rows[0]["last_run"]["run_id"], rows[0]["connector_display_name"]) == (
        False,
        "run_3",
        "Acme Corp",
    )


def test_migrate_command_builds_with_plain_progress_lines(
    app_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", app_url, "migrate"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("migrated ") and lines[1].startswith("built the overview in ")
    with Projection(app_url, staleness_bound=None) as proj:
        assert [r["connector_instance_id"] for r in proj.list()] == ["cin_work"]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    terminal = _Stream(tty=True)
    reporter = Reporter(terminal)
    reporter.show("index on spine_events", 50, 200, "building index: 50/200 blocks")
    assert terminal.getvalue() == (
        "\r\x1b[2Kindex on spine_events [#######.......................]  25% building index: 50/200 blocks"
    )
    log = _Stream(tty=False)
    reporter = Reporter(log)
    reporter.show("index on spine_events", 50, 200, "building index")
    reporter.show("index on spine_events", 60, 200, "building index")  # same phase, too soon: not printed
    reporter.show("building the overview", detail="0m01s elapsed")
    assert log.getvalue() == "index on spine_events 25% building index\nbuilding the overview 0m01s elapsed\n"


def test_http_overview_page_says_building(app_url: str) -> None:
    """What GET /_ref/connectors writes (AsyncProjection.list_page) during the first build."""
    import asyncio
    import json

    from refproj import AsyncProjection

    migrate.upgrade(app_url)

    async def pages() -> tuple[Any, Any]:
        async with AsyncProjection(app_url, staleness_bound=None, read_reuse=0) as proj:
            building = await proj.list_page()
            await proj.refresh()
            return building, await proj.list_page()

    building, built = asyncio.run(pages())
    assert building.building is True
    body = json.loads(building.body)
    assert (body["connections"], body["building"]) == ([], True)
    assert built.building is False
    body = json.loads(built.body)
    assert "building" not in body
    assert [row["connector_instance_id"] for row in body["connections"]] == ["cin_work"]
    assert building.etag != built.etag


# Every narrower type the adoption check (sql/0001_source_tables.sql) takes: (type of the columns
# refproj reads as text, type of those it reads as bigint).
ADOPTED_TYPES = [("varchar(200)", "bigint"), ("varchar", "bigint"), ("text", "integer"), ("text", "smallint")]

ADOPTED_ROWS = """
INSERT INTO connectors (connector_id, display_name) VALUES ('acme', 'Acme');
INSERT INTO connector_instances (connector_instance_id, connector_id, display_name, created_at) VALUES
    ('cin_work', 'acme', 'Work', '2026-01-05 09:00+00'),
    ('cin_home', 'acme', NULL, '2026-01-05 09:30+00');
INSERT INTO spine_events
    (event_type, occurred_at, status, source_kind, source_id, run_id, connector_instance_id, data)
VALUES ('run.started', '2026-01-05 10:00+00', 'ok', 'connector', 'acme', 'run_1', 'cin_work', '{}'),
       ('run.completed', '2026-01-05 10:05+00', 'succeeded', 'connector', 'acme', 'run_1', 'cin_work',
        '{"records_emitted": 7}'),
       ('run.started', '2026-01-05 11:00+00', 'ok', 'connector', 'acme', 'run_2', 'cin_work', '{}'),
       ('run.failed', '2026-01-05 11:05+00', 'failed', 'connector', 'acme', 'run_2', 'cin_work',
        '{"reason": "timeout"}'),
       ('run.started', '2026-01-05 11:10+00', 'ok', 'connector', 'acme', 'run_h', NULL,
        '{"connection_id": "cin_home"}');
INSERT INTO controller_active_runs VALUES ('cin_home', 'acme', 'run_h', '2026-01-05 11:10+00');
INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count,
    current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at)
VALUES ('cin_work', 'orders', 'acme', 120, 3000, 500, 0, '2026-01-05 11:30+00'),
       ('cin_work', 'returns', 'acme', 30, 900, 100, 2000, '2026-01-05 11:30+00');
INSERT INTO retained_size_connection (connector_instance_id, connector_id, record_count,
    current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at)
VALUES ('cin_work', 'acme', 150, 3900, 600, 2000, '2026-01-05 11:30+00');
"""


def adopted_tables(url: str, text_type: str, bigint_type: str) -> None:
    """The source tables as revision 0001 creates them, with every text and bigint column of
    them retyped (so adopted), then a few rows."""
    with psycopg.connect(url) as conn:
        conn.execute(read_sql("0001_source_tables.sql"))
        columns = conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute AS a"
            " JOIN pg_class AS c ON c.oid = a.attrelid"
            " WHERE c.oid = ANY (%s::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped"
            " AND a.atttypid IN ('text'::regtype, 'bigint'::regtype)",
            (list(SOURCE_TABLES),),
        ).fetchall()
        for table in SOURCE_TABLES:
            conn.execute(f"COMMENT ON TABLE {table} IS NULL")
        for table, column, type_name in columns:
            new_type = text_type if type_name == "text" else bigint_type
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type}")
        conn.execute(ADOPTED_ROWS)


@pytest.mark.parametrize(("text_type", "bigint_type"), ADOPTED_TYPES)
def test_every_adopted_type_serves_list_detail_verify_and_refresh(
    empty_db_url: str, text_type: str, bigint_type: str
) -> None:
    url = empty_db_url
    adopted_tables(url, text_type, bigint_type)
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'connector_instances'::regclass AND attname = 'connector_instance_id'"
        ).fetchone() == (
            {"varchar(200)": "character varying(200)", "varchar": "character varying"}.get(text_type, "text"),
        )

    def overview(proj: Projection) -> list[tuple[Any, ...]]:
        return [
            (
                r["connector_instance_id"],
                r["display_name"],
                r["last_run"]["run_id"],
                r["last_run"]["status"],
                (r["last_successful_run"] or {}).get("run_id"),
                r["failures_since_last_success"],
                r["total_records"],
                r["total_retained_bytes"],
            )
            for r in proj.list()
        ]

    with Projection(url, staleness_bound=None, read_reuse=0) as proj:
        proj.refresh()
        assert overview(proj) == [
            ("cin_work", "Work", "run_2", "failed", "run_1", 1, 150, 6500),
            ("cin_home", "Acme", "run_h", "in_progress", None, 0, 0, 0),
        ]
        detail = proj.get("cin_work")
        assert [r["run_id"] for r in detail["recent_runs"]] == ["run_2", "run_1"]
        assert detail["last_run"]["failure_reason"] == "timeout"
        assert detail["retained_bytes"] == {
            "record_json_bytes": 3900,
            "record_changes_json_bytes": 600,
            "blob_bytes": 2000,
            "total_bytes": 6500,
        }
        assert [(s["stream"], s["record_count"], s["blob_bytes"]) for s in detail["streams_retained"]] == [
            ("orders", 120, 0),
            ("returns", 30, 2000),
        ]
        assert proj.get("cin_home")["last_run"]["status"] == "in_progress"
        assert proj.verify() == []

        # A write each trigger sees, then an incremental refresh, then a full one.
        with psycopg.connect(url, autocommit=True) as app:
            app.execute(
                "INSERT INTO spine_events (event_type, occurred_at, status, source_kind, source_id, run_id,"
                " connector_instance_id) VALUES ('run.completed', '2026-01-05 12:00+00', 'succeeded',"
                " 'connector', 'acme', 'run_3', 'cin_work')"
            )
            app.execute("DELETE FROM controller_active_runs")
            app.execute("UPDATE retained_size_connection SET blob_bytes = 3000")
        assert proj.get("cin_work")["last_run"]["run_id"] == "run_3"
        assert proj.refresh().refreshed is True
        expected = [
            ("cin_work", "Work", "run_3", "succeeded", "run_3", 0, 150, 7500),
            ("cin_home", "Acme", "run_h", "failed", None, 1, 0, 0),
        ]
        assert overview(proj) == expected
        assert proj.verify() == []
        proj.refresh(full=True)
        assert overview(proj) == expected
        assert proj.verify() == []

    with psycopg.connect(url) as conn:
        # Key filters still reach the indexes through the casts (varchar's comparisons are text's).
        assert "spine_events_source_run_summary_idx" in plan(
            conn, "SELECT * FROM refproj.run_summaries WHERE connector_id = 'acme' AND run_id = 'run_1'"
        )
        keys = plan(conn, "SELECT * FROM refproj.connection_keys WHERE connector_id = 'acme'")
        assert re.search(r"Index Cond: \(+connector_id\)?(::text)? = 'acme'", keys), keys
        assert conn.execute(
            "SELECT connector_instance_id, last_run ->> 'run_id', total_records, unattributed_runs"
            " FROM refproj.connection_detail('cin_work')"
        ).fetchone() == ("cin_work", "run_3", 150, 0)
        assert conn.execute(
            "SELECT last_run ->> 'run_id', last_successful_run ->> 'run_id', failures_since_last_success"
            " FROM refproj.connection_run_evidence('cin_home')"
        ).fetchone() == ("run_h", None, 1)
        assert conn.execute(
            "SELECT refproj.connection_detail_json('cin_home')::jsonb ->> 'connector_instance_id'"
        ).fetchone() == ("cin_home",)


def test_seed_fits_sizes_to_adopted_integer_columns(empty_db_url: str) -> None:
    """A size beyond an adopted integer column's range is seeded as the column's largest value."""
    adopted_tables(empty_db_url, "varchar(200)", "integer")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "TRUNCATE connectors, connector_instances, spine_events, controller_active_runs,"
            " retained_size_connection, retained_size_stream"
        )
    migrate.upgrade(empty_db_url)
    assert main(["--database-url", empty_db_url, "seed", "--no-refresh"]) == 0
    with Projection(empty_db_url, staleness_bound=None) as proj:
        proj.refresh()
        detail = proj.get("amazon_work")
        assert proj.verify() == []
    assert detail["retained_bytes"] == {
        "record_json_bytes": 129729909,
        "record_changes_json_bytes": 133886280,
        "blob_bytes": 2147483647,
        "total_bytes": 2411099836,
    }
    assert detail["total_records"] == 89378


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (
            "ALTER TABLE connector_instances ALTER COLUMN connector_instance_id TYPE varchar(8)",
            "value too long for type character varying(8)",
        ),
        (
            "ALTER TABLE spine_events ALTER COLUMN event_seq TYPE smallint;"
            " ALTER TABLE spine_events ALTER COLUMN event_seq RESTART WITH 32000",
            "smallint out of range",
        ),
    ],
)
def test_seed_refuses_ids_and_event_seqs_an_adopted_column_cannot_hold(
    empty_db_url: str, capsys: pytest.CaptureFixture[str], alter: str, message: str
) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(read_sql("0001_source_tables.sql"))
        conn.execute(alter)
    migrate.upgrade(empty_db_url)
    assert main(["--database-url", empty_db_url, "seed"]) == 7
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"refproj: the tiny workload does not fit the source tables' columns ({message});"
        " nothing was written: widen the column or seed a smaller profile\n",
    )
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(
            "SELECT (SELECT count(*) FROM connectors) + (SELECT count(*) FROM spine_events)"
            " + (SELECT count(*) FROM retained_size_stream)"
        ).fetchone() == (0,)


def test_seed_numbers_events_after_the_highest_when_event_seq_has_no_sequence(empty_db_url: str) -> None:
    """An application's event_seq need not have a sequence of its own (a trial's hand-made table
    had none, and the seed crashed with a TypeError): the seed numbers its events from the value
    after the highest one present, in its own order, and the projection serves them."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(read_sql("0001_source_tables.sql"))
        conn.execute("ALTER TABLE spine_events ALTER COLUMN event_seq DROP IDENTITY")
        conn.execute(
            "INSERT INTO spine_events (event_seq, event_id, event_type) VALUES (41, 'app_event', 'app.note')"
        )
    migrate.upgrade(empty_db_url)
    assert main(["--database-url", empty_db_url, "seed", "--no-refresh"]) == 0
    with psycopg.connect(empty_db_url) as conn:
        seqs = conn.execute(
            "SELECT min(event_seq), max(event_seq), count(*) FROM spine_events WHERE event_id <> 'app_event'"
        ).fetchone()
        # Seed 0 of tiny writes 7,044 events (refproj/seed.py), numbered 42 on without a gap.
        assert seqs == (42, 42 + 7044 - 1, 7044)
    with Projection(empty_db_url, staleness_bound=None) as proj:
        proj.refresh()
        assert proj.verify() == []

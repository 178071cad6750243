"""A real streaming standby: ``Projection(primary, replica=...)`` reads the overview and the detail
from the standby and refreshes on the primary; a write reaches ``list()`` on the standby through
the primary's watcher and WAL replay. A refresh sent to the standby itself fails with one clear
``ReadOnlyServer``.

The shared test server does not accept replication connections (its pg_hba.conf has no
``replication`` line), so the test starts its own primary (``initdb``, trust auth, which allows
replication from 127.0.0.1) and a standby made with ``pg_basebackup -R`` from it, both with the
binaries of the test server's major when installed (refproj.embedded.LocalServer).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from refproj import Projection, ReadOnlyServer, embedded, migrate
from tests.conftest import _server
from tests.web_server import running_server
from tests.world import World, wait_for

DBNAME = "refproj_replica"


def _major() -> int:
    with psycopg.connect(_server.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    installed = embedded.available()
    major = int(row[0]) // 10000
    return major if major in installed else max(installed)


class Pair:
    def __init__(self, primary: embedded.LocalServer, standby: embedded.LocalServer) -> None:
        self.primary_server = primary
        self.standby_server = standby
        self.primary = primary.url(DBNAME)
        self.standby = standby.url(DBNAME)


@pytest.fixture(scope="module")
def servers() -> Iterator[Pair]:
    root = Path(tempfile.mkdtemp(prefix="refproj-replica-test-"))
    root.chmod(0o755)  # the server user must reach the data directories inside
    major = _major()
    primary = embedded.LocalServer(root / "primary", major)
    standby: embedded.LocalServer | None = None
    try:
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        migrate.upgrade(primary.url(DBNAME))
        standby = primary.standby(root / "standby")
        standby.start()
        yield Pair(primary, standby)
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def replayed(pair: Pair) -> bool:
    """Whether the standby has replayed everything the primary has written so far."""
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
    return bool(done and done[0])


@pytest.fixture
def world(servers: Pair) -> Iterator[World]:
    with psycopg.connect(servers.primary, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(
            "TRUNCATE spine_events, controller_active_runs, retained_size_stream, retained_size_connection,"
            " connector_instances, connectors"
        )
        world = World(conn)
        world.siblings()
        world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
        world.refresh()
        wait_for(lambda: replayed(servers), what="the standby to replay the setup")
        yield world


def standby_sessions(pair: Pair) -> int:
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_reads_come_from_the_standby_and_a_write_reaches_them_through_the_primary(
    world: World, servers: Pair
) -> None:
    bound = 1.0
    with Projection(servers.primary, replica=servers.standby, staleness_bound=bound, read_reuse=0.1) as proj:
        before = proj.list()
        assert [row["connector_instance_id"] for row in before] == ["cin_work", "cin_personal"]
        assert before[0]["last_run"]["run_id"] == "run_ok"
        assert proj.get("cin_work")["last_run"]["run_id"] == "run_ok"
        # The reads went to the standby: its pool holds a session there.
        assert standby_sessions(servers) >= 1

        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        written = world.db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        # Nobody calls refresh(): the watcher (on the primary) refreshes, the standby replays.
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"]["run_id"] == "run_bad" and r,
            timeout=30,
            what="the write to reach list() on the standby",
        )
        # as_of is the snapshot time of the refresh the standby has replayed: it covers the write,
        # and the watcher took it within the staleness bound of the commit.
        assert isinstance(rows.as_of, datetime)
        assert written < rows.as_of
        assert (rows.as_of - written).total_seconds() <= bound
        assert proj.get("cin_work")["last_run"]["run_id"] == "run_bad"

        # refresh() and status() go to the primary: read-your-writes holds once replayed.
        world.succeeded_run("run_new", "cin_personal", "12:10", "12:15")
        result = proj.refresh()
        assert proj.status().as_of == result.as_of
        wait_for(lambda: replayed(servers), what="the standby to replay the refresh")
        assert proj.list().as_of == result.as_of


def test_a_refresh_on_the_standby_is_one_clear_error(world: World, servers: Pair) -> None:
    with Projection(servers.standby, staleness_bound=None) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        with pytest.raises(ReadOnlyServer, match=r"^this server is read-only; refresh on the primary"):
            proj.refresh()


def test_the_http_refresh_on_the_standby_is_503_read_only(world: World, servers: Pair) -> None:
    # No event stream: LISTEN cannot run during recovery.
    with (
        running_server(servers.standby, listen_conninfo=None) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        response = client.post("/_ref/connectors/refresh")
        assert response.status_code == 503
        assert response.json()["error"] == "read_only"
        assert response.json()["message"].startswith(
            f"this server is read-only; refresh on the primary ({servers.standby}: "
        )

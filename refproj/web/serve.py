"""``refproj serve``: the HTTP service under uvicorn.

Each uvicorn worker process builds its own app (``app_from_environment``, a factory uvicorn
imports), so each has its own pool, single flight and one LISTEN connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import tempfile

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from refproj import AsyncProjection
from refproj._format import text
from refproj.errors import CannotListen, InvalidArgument, RefprojError
from refproj.settings import database_url, libpq_url, url_text
from refproj.web.app import create_app
from refproj.web.metrics import MULTIPROC

TOKEN_VARIABLE = "REFPROJ_API_TOKEN"
MAX_WORKERS = 64  # more processes than this only compete for the cores and the database's connections


def app_from_environment() -> Starlette:
    """The app for ``$DATABASE_URL`` with the token ``$REFPROJ_API_TOKEN`` (none when unset)."""
    url = url_text(database_url())
    projection = AsyncProjection(url)
    return create_app(
        projection,
        token=os.environ.get(TOKEN_VARIABLE) or None,
        listen_conninfo=libpq_url(url),
        close_projection=projection.aclose,
    )


def listen(host: str, port: int, workers: int = 1) -> socket.socket:
    """A TCP socket bound to ``host`` (an address or a name) and ``port`` (1 to 65535), for
    :func:`serve` with ``workers`` processes (1 to MAX_WORKERS); warns on stderr when a host
    other than loopback is served without ``$REFPROJ_API_TOKEN``.

    Bound here rather than by uvicorn, whose start-up failures are several log lines and exit 3:
    raises :class:`InvalidArgument` for an option out of range or a host that is no address and
    resolves to none, and :class:`CannotListen` when the address cannot be bound (in use, not
    this machine's, a port below 1024 without the privilege).
    """
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"--port must be from 1 to 65535, not {port}")
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgument(f"--workers must be from 1 to {MAX_WORKERS}, not {workers}")
    sock = _bind(host, port)
    if not os.environ.get(TOKEN_VARIABLE) and not _loopback(host):
        # Serving anyway keeps a trusted network (a container's, a VPN's) simple; say it once.
        print(
            f"refproj: warning: serving {text(host)} without {TOKEN_VARIABLE}: anyone who can reach"
            " it reads the console",
            file=sys.stderr,
        )
    return sock


def _loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, *_, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError, ValueError) as error:  # gaierror; a NUL or an undecodable name
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise InvalidArgument(
            f"--host {host!r} is not an address or a name this machine resolves ({reason})"
        ) from error
    try:
        return socket.create_server(address, family=family)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)  # without Python's address suffix
        raise CannotListen(f"cannot listen on {host}:{port}: {reason}") from error


def serve(sock: socket.socket, workers: int = 1, log_level: str = "info") -> None:
    """Serve on ``sock`` (from :func:`listen`) until interrupted (blocks); ``workers`` processes,
    1 to MAX_WORKERS (the CLI checks). The database comes from ``$DATABASE_URL``."""
    if workers == 1:
        run(sock, workers, log_level)
        return
    # Several workers: their metrics are added up from files in a directory of their own
    # (refproj.web.metrics); the workers are spawned after this, so they all see it.
    with tempfile.TemporaryDirectory(prefix="refproj-metrics-") as shared:
        os.environ[MULTIPROC] = shared
        try:
            run(sock, workers, log_level)
        finally:
            del os.environ[MULTIPROC]


def run(sock: socket.socket, workers: int, log_level: str) -> None:
    # uvicorn.run, but on the socket bound above (Config and Server are uvicorn's API for that).
    config = uvicorn.Config(
        "refproj.web.serve:app_from_environment",
        factory=True,
        workers=workers,
        log_level=log_level,
        # The overview body is already JSON bytes; nothing to gain from uvicorn's access log
        # formatting on the hot path at high request rates.
        access_log=log_level == "debug",
        # A worker that has not answered uvicorn's supervisor within this many seconds is killed
        # and replaced. The default (5 s) is shorter than importing the stack takes on a busy
        # 2-core machine, where workers were then replaced in a loop and never served.
        timeout_worker_healthcheck=60,
    )
    # uvicorn says where it listens only when it binds the socket itself.
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, port
    )
    with sock, contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is stopped: exit 0
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
            return
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:  # the app failed to start (uvicorn logged why)
            raise RefprojError("the HTTP service did not start (see the error logged above)")

"""``refproj``: the command line over the projection.

Every command takes the database from ``--database-url`` (before or after the command name),
else ``$DATABASE_URL``, else the local demo database. Expected failures print one line to stderr
and exit non-zero: 2 usage (a bad option or argument), 3 database unreachable, 4 migrations not
applied, 5 connection not found, 6 ambiguous connector id, 7 invalid input, 8 statement canceled
(timeout), 9 permission denied, 10 an existing source table lacks a column refproj needs
(migrate), 11 ``verify`` found differences, 12 the server is read-only (a standby), 13 the output
could not be written (stdout closed, disk full), 14 ``serve`` cannot listen on its address (in
use, not this machine's), 15 ``migrate`` refused: schema refproj holds an object refproj did
not create, 1 any other error. Output cut short by a closed
pipe (``| head``) ends quietly with 141, as other Unix tools do; an interrupt (Ctrl-C) prints one
line and exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from refproj import __version__
from refproj import _format as fmt
from refproj._core import DEFAULT_REFRESH_TIMEOUT
from refproj.cli.bench_commands import cmd_bench, cmd_browser_bench
from refproj.cli.commands import (
    cmd_grant_reader,
    cmd_list,
    cmd_migrate,
    cmd_refresh,
    cmd_seed,
    cmd_serve,
    cmd_show,
    cmd_status,
    cmd_verify,
)
from refproj.errors import (
    AmbiguousConnection,
    CannotListen,
    ConnectionNotFound,
    DatabaseUnavailable,
    ForeignObjectsInSchema,
    InvalidArgument,
    MigrationsNotApplied,
    PermissionDenied,
    ReadOnlyServer,
    RefprojError,
    SourceTablesIncompatible,
    StatementCanceled,
    first_line,
)


class OutputFailed(RefprojError):
    """Standard output is closed or a write to it failed (a full disk, an I/O error). A reader
    that closed its pipe is not this: that ends quietly (141)."""


class _Stdout(io.FileIO):
    """File descriptor 1, whose write errors are :class:`OutputFailed` (BrokenPipeError stays)."""

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputFailed(f"cannot write the output: {error.strerror or error}") from error


def _guard_stdout() -> None:
    """Refuse to start with stdout closed (``>&-``: Python then has no sys.stdout and every
    print would vanish), and make a failing write to the real stdout an OutputFailed. A stdout
    that is not the process's own (a test's capture, an embedding program's) is left alone."""
    if sys.stdout is None:
        raise OutputFailed("cannot write the output: standard output is closed")
    if sys.stdout is sys.__stdout__ and isinstance(sys.stdout, io.TextIOWrapper):
        old = sys.stdout
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(_Stdout(old.fileno(), "w", closefd=False)),
            encoding=old.encoding,
            errors=old.errors,
            line_buffering=old.line_buffering,
        )


EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool cut off by `| head`
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_CODES: list[tuple[type[RefprojError], int]] = [
    (DatabaseUnavailable, 3),
    (MigrationsNotApplied, 4),
    (ConnectionNotFound, 5),
    (AmbiguousConnection, 6),
    (InvalidArgument, 7),
    (StatementCanceled, 8),
    (PermissionDenied, 9),
    (SourceTablesIncompatible, 10),
    (ReadOnlyServer, 12),
    (OutputFailed, 13),
    (CannotListen, 14),
    (ForeignObjectsInSchema, 15),
    (RefprojError, 1),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: sys.argv) names; return its exit code (the module's
    list). Errors are one line on stderr, never a traceback."""
    try:
        _guard_stdout()
        code = _run(argv)
        sys.stdout.flush()  # a write error of the last buffered lines is this command's too
        return code
    except RefprojError as error:
        if isinstance(error, OutputFailed):
            _discard_stdout()
        _say(f"refproj: {error}")
        return next(code for kind, code in EXIT_CODES if isinstance(error, kind))
    except BrokenPipeError:
        # The reader went away (`refproj status | head -1`): stop quietly.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say("refproj: interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:
        # A defect, not an expected failure: still one line, with a way to see the traceback.
        if os.environ.get("REFPROJ_TRACEBACK"):
            raise
        _say(
            f"refproj: unexpected error ({type(error).__name__}: {first_line(error)});"
            " set REFPROJ_TRACEBACK=1 for details"
        )
        return 1


def _discard_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush of what is still buffered does
    # not fail (and print) again.
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # argparse: --help, --version, usage errors
        return 0 if done.code is None else done.code if isinstance(done.code, int) else EXIT_USAGE
    return int(args.command(args))


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        print(fmt.text(line), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        _say(f"{self.prog}: {message} (see {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refproj", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"refproj {__version__}")
    url_help = "postgresql:// URL (default: $DATABASE_URL, else the demo database)"
    parser.add_argument("--database-url", help=url_help)
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=fn)
        # Also accepted after the command name; SUPPRESS keeps a value given before it.
        sub.add_argument("--database-url", default=argparse.SUPPRESS, help=url_help)
        return sub

    sub = command("migrate", cmd_migrate, "apply the migrations (alembic upgrade head)")
    sub.add_argument(
        "--create-database", action="store_true", help="create the database first if it is missing"
    )
    sub.add_argument(
        "--no-build",
        action="store_true",
        help="leave the first build of the overview to the next refresh (a Projection's watcher)",
    )
    sub = command(
        "refresh", cmd_refresh, "refresh the overview; returns when it reflects every earlier write"
    )
    sub.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_REFRESH_TIMEOUT,
        metavar="SECONDS",
        help="give up after this long, waiting for other refreshes included"
        f" (default {DEFAULT_REFRESH_TIMEOUT:g}; 0: no limit)",
    )
    sub.add_argument(
        "--full",
        action="store_true",
        help="rebuild from the source tables whole (writes no trigger saw: see verify)",
    )
    sub = command(
        "verify",
        cmd_verify,
        "compare the stored overview with a from-scratch computation; list the connections that differ"
        " (exit 11 when any does)",
    )
    sub.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="give up after this long (default 600; 0: no limit)",
    )
    sub = command("status", cmd_status, "how current the overview is")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub = command("list", cmd_list, "the overview: one row per visible connection")
    sub.add_argument("--connector", metavar="ID", help="only this connector's connections")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub = command("show", cmd_show, "live detail of one connection (or of a connector's only connection)")
    sub.add_argument("connection", metavar="CONNECTION")
    sub.add_argument(
        "--runs",
        type=int,
        default=20,
        metavar="N",
        help="recent runs to include (default 20, 0 to 2147483647)",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub = command("seed", cmd_seed, "load a synthetic workload into empty source tables")
    sub.add_argument("--profile", default="tiny", help="tiny, S, M or L (default tiny)")
    sub.add_argument("--history-factor", type=float, default=1.0, help="multiply runs per connection")
    sub.add_argument("--seed", type=int, default=0, help="pseudo-random seed (default 0)")
    sub.add_argument(
        "--replace",
        action="store_true",
        help="delete every source row first (in the seed's transaction: a failed seed keeps them)",
    )
    sub.add_argument("--no-refresh", action="store_true", help="do not refresh the overview after seeding")
    sub.add_argument(
        "--recent",
        action="store_true",
        help="end the workload an hour ago instead of at its fixed base time (the demo's states show now)",
    )
    sub = command(
        "grant-reader", cmd_grant_reader, "let ROLE read the overview, detail, status and request refreshes"
    )
    sub.add_argument("role", metavar="ROLE")
    sub = command("bench", cmd_bench, "measure the projection against its baselines (bench/README.md)")
    sub.add_argument("--profiles", default="S,M", help="comma-separated workload profiles (default S,M)")
    sub.add_argument("--quick", action="store_true", help="a fast pass with fewer samples")
    sub.add_argument("--output", default="bench", metavar="DIR", help="where results/ and README.md go")
    sub.add_argument("--history-profile", help="profile of the history series (default: smallest but tiny)")
    sub = command(
        "serve",
        cmd_serve,
        "serve the console HTTP API (GET /_ref/connectors ...); $REFPROJ_API_TOKEN requires a bearer token",
    )
    sub.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    sub.add_argument("--port", type=int, default=8000, help="TCP port, 1 to 65535 (default 8000)")
    sub.add_argument("--workers", type=int, default=1, help="worker processes, 1 to 64 (default 1)")
    sub = command(
        "browser-bench",
        cmd_browser_bench,
        "load the console pages in headless Chromium and measure them (exit 2: no browser or server)",
    )
    sub.add_argument("--base", metavar="URL", help="measure this running server (default: start one)")
    sub.add_argument("--check", action="store_true", help="fail on console errors or failed requests")
    sub.add_argument(
        "--route", action="append", dest="routes", metavar="PATH", help="a page to load (repeat)"
    )
    sub.add_argument("--viewport", action="append", dest="viewports", choices=["desktop", "mobile"])
    sub.add_argument("--compare", metavar="PROFILES", help="side-by-side old/refproj/floor, e.g. S,M")
    sub.add_argument("--repeat", type=int, default=3, help="cold loads per page in --compare (default 3)")
    sub.add_argument("--output", default="bench", metavar="DIR", help="where results/ goes")
    sub.add_argument(
        "--token",
        metavar="TOKEN",
        help="the server's REFPROJ_API_TOKEN (default: $REFPROJ_API_TOKEN); pages load signed in",
    )
    return parser


def _seconds(text: str) -> float:
    # Only the form is checked here (not a number: usage, 2); the range is the command's to
    # check, like every numeric option's (out of range, nan, inf: invalid input, 7).
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None

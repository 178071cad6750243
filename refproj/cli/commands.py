"""The `refproj` commands: each takes the parsed arguments and returns its exit code (0: done).
A RefprojError one raises is one line on stderr and the exit code refproj.cli gives its kind: 3
unreachable, 4 not migrated, 7 invalid input, 8 timeout, 9 permission denied, 13 output not
written, 1 other; each command's docstring names the kinds it adds."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import URL

from refproj import _format as fmt
from refproj import migrate
from refproj._core import MAX_TIMEOUT, check_identifier, check_seconds
from refproj.errors import (
    InvalidArgument,
    InvalidDatabaseUrl,
    MigrationsNotApplied,
    PermissionDenied,
    RefprojError,
    StatementCanceled,
    first_line,
    translate,
)
from refproj.projection import Projection
from refproj.settings import DEFAULT_CONNECT_TIMEOUT, connect_args, database_url, libpq_url, url_text


def _url(args: argparse.Namespace) -> URL:
    """The database of this command: --database-url, else $DATABASE_URL, else the demo database
    (the CLI's documented default; the library has none)."""
    return database_url(args.database_url)


def _projection(args: argparse.Namespace, **options: Any) -> Projection:
    return Projection(_url(args), read_reuse=0, staleness_bound=None, **options)


@contextlib.contextmanager
def _database_errors(url: URL) -> Iterator[None]:
    """Driver errors of psycopg used directly (and of Alembic) as RefprojErrors."""
    from alembic.util import CommandError

    try:
        yield
    except (psycopg.Error, exc.SQLAlchemyError) as error:
        raise translate(error, fmt.shown(url)) from error
    except CommandError as error:
        raise RefprojError(f"migration failed: {first_line(error)}") from error


BUILDING_MESSAGE = (
    "the overview is still being built (the first refresh after install or a schema-only restore"
    " scans the whole history;"
    " `refproj refresh --timeout 0` runs it and returns when it is done)"
)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Migrations, then the first build of the overview when it is pending (the migration only
    asks for it, so it never holds locks while scanning the history). Progress goes to stderr.
    Also 10 (a source table lacks a column), 12 (a standby), 15 (foreign objects in schema refproj)."""
    from refproj import progress

    url = _url(args)
    reporter = progress.Reporter()
    with _database_errors(url):
        if args.create_database:
            _create_database(url)
        with progress.Watch(libpq_url(url), progress.index_build_probe, progress.draw_index_build(reporter)):
            migrate.upgrade(url, warnings=sys.stderr)
        reporter.done(f"migrated {fmt.shown(url)} to head")
        if args.no_build:
            return 0
        with _projection(args, refresh_timeout=0) as proj:
            if not proj.status().building:
                return 0
            with _connect(url) as conn:
                rows, size = progress.history_size(conn)
            draw = progress.draw_first_build(reporter, rows, size)
            with progress.Watch(libpq_url(url), lambda _: None, draw):
                result = proj.refresh()
        reporter.done(f"built the overview in {result.refresh_ms / 1000:.1f} s")
    return 0


def _connect(url: URL, **options: Any) -> psycopg.Connection[Any]:
    """A psycopg connection to ``url``: the URL's connect_timeout, else refproj's default."""
    return psycopg.connect(libpq_url(url), **connect_args(DEFAULT_CONNECT_TIMEOUT, url), **options)


def _create_database(url: URL) -> None:
    name = url.database
    if not name:
        raise InvalidArgument(f"{fmt.shown(url)} names no database")
    with _connect(url.set(database="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


EXIT_DIFFERENCES = 11  # verify: the stored overview differs from a from-scratch computation


def _timeout(args: argparse.Namespace) -> float:
    """--timeout in range (0 to a day), else InvalidArgument (exit 7) like every numeric option."""
    return check_seconds("--timeout", args.timeout, 0, MAX_TIMEOUT)


def cmd_refresh(args: argparse.Namespace) -> int:
    """Prints ``refreshed: overview as of AS_OF (MS ms)`` (or ``joined ...``) once a refresh that
    started after the call committed; 8 past --timeout seconds, 12 on a standby."""
    with _projection(args, refresh_timeout=_timeout(args)) as proj:
        try:
            result = proj.refresh(full=args.full)
        except StatementCanceled as error:
            # The usual cause is the first refresh after a bulk load, which rebuilds run_facts whole.
            raise StatementCanceled(
                f"{error} (refresh timeout {args.timeout:g} s; raise it with --timeout, 0 for no limit)"
            ) from error
    if args.full:
        verb = "rebuilt" if result.refreshed else "joined a concurrent full rebuild"
    else:
        verb = "refreshed" if result.refreshed else "joined a concurrent refresh"
    print(f"{verb}: overview as of {result.as_of.isoformat()} ({result.refresh_ms:.1f} ms)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """One line per connection and view that differs (``ID: VIEW DIFFERENCE (FIELDS)``), nothing
    when exact; exit 11 when any differs, 8 past --timeout seconds."""
    with _projection(args, statement_timeout=_timeout(args)) as proj:
        status = proj.status()
        differences = proj.verify()
    lines: dict[str, list[str]] = {}
    for d in differences:
        if d["connector_instance_id"] is None and not d["fields"]:  # a view left unpopulated
            lines.setdefault(f"refproj.{d['overview']}", []).append(d["difference"])
            continue
        if d["connector_instance_id"] is None:  # a refproj trigger a DBA disabled: table.trigger
            lines.setdefault(d["fields"][0], []).append(f"{d['overview']} {d['difference']}")
            continue
        fields = f" ({', '.join(d['fields'])})" if d["fields"] else ""
        lines.setdefault(d["connector_instance_id"], []).append(f"{d['overview']} {d['difference']}{fields}")
    for connection, kinds in lines.items():
        print(fmt.text(f"{connection}: {'; '.join(kinds)}"))
    if differences and status.source_changed:
        _note(
            "refproj: writes are pending a refresh, so some differences may be only those;"
            " run `refproj refresh` and verify again"
        )
    return EXIT_DIFFERENCES if differences else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Prints ``status()``: as of, source changed, last refresh, refreshes (--json: its dict)."""
    with _projection(args) as proj:
        status = proj.status()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return 0
    last = "never" if status.last_refresh_ms is None else f"{status.last_refresh_ms:.1f} ms"
    print(f"as of:          {status.as_of.isoformat()}")
    print(f"source changed: {'yes' if status.source_changed else 'no'}")
    print(f"last refresh:   {last}")
    print(f"refreshes:      {status.refresh_count}")
    if status.building:
        print(f"building:       yes: {BUILDING_MESSAGE}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Prints the overview (one connector's with CONNECTOR) as a table, or --json its envelope;
    7 for a malformed connector id."""
    with _projection(args) as proj:
        overview = proj.list(args.connector)
    if args.json:
        print(json.dumps(overview.envelope(), indent=2))
        return 0
    if overview.building:
        print(BUILDING_MESSAGE)
        return 0
    header = ("CONNECTION", "CONNECTOR", "STATUS", "HEALTH", "LAST RUN", "LAST SUCCESS", "FAILS", "RECORDS")
    rows = [
        (
            row["connector_instance_id"],
            row["connector_id"],
            row["status"],
            fmt.health(row["health"]),
            fmt.run(row["last_run"]),
            fmt.when(row["last_successful_run"]),
            str(row["failures_since_last_success"]),
            fmt.count(row["total_records"]),
        )
        for row in overview
    ]
    fmt.table(header, rows)
    changed = ", source changed since" if overview.source_changed else ""
    print(f"\n{len(overview)} connections, as of {overview.as_of.isoformat()}{changed}")
    if overview.source_changed:  # else an overview older than a seed reads as "no connections"
        _note("refproj: the source tables changed after this overview was refreshed: run `refproj refresh`")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Prints one connection's live detail and its --runs most recent runs (--json: the detail);
    5 not found, 6 a connector id with several connections, 7 a bad id or --runs."""
    with _projection(args) as proj:
        detail = proj.get(args.connection, run_limit=args.runs)
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    fields = [
        ("connection", detail["connector_instance_id"]),
        ("name", detail["display_name"]),
        ("connector", f"{detail['connector_id']} ({detail['connector_display_name']})"),
        ("status", detail["status"]),
        ("health", fmt.health(detail["health"])),
        ("freshness", detail["freshness"]["status"]),
        ("last run", fmt.run(detail["last_run"])),
        ("last success", fmt.run(detail["last_successful_run"])),
        ("failures since success", detail["failures_since_last_success"]),
        ("records", f"{fmt.count(detail['total_records'])} in {detail['stream_count']} streams"),
        ("retained bytes", fmt.count(detail["total_retained_bytes"])),
        ("unattributed runs", f"{detail['unattributed_runs']} (connector-wide, matching no connection)"),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name + ':':<{width + 2}}{fmt.text(value)}")
    if detail["recent_runs"]:
        print()
        fmt.table(
            ("RUN", "STATUS", "STARTED", "LAST EVENT", "EVENTS", "FAILURE REASON"),
            [
                (
                    run["run_id"],
                    run["status"],
                    run["started_at"] or "-",
                    run["last_at"] or "-",
                    str(run["event_count"]),
                    run["failure_reason"] or "",
                )
                for run in detail["recent_runs"]
            ],
        )
    return 0


def cmd_grant_reader(args: argparse.Namespace) -> int:
    """Runs refproj.grant_reader(ROLE); see README, "Least privilege". 7 for PUBLIC or a role that
    does not exist, 9 when not run as the projection's owner."""
    url = _url(args)
    role = check_identifier(args.role, "role")
    try:
        with _database_errors(url), _connect(url) as conn:
            # The SQL function reads the name (a quoted identifier is unquoted there).
            conn.execute("SELECT refproj.grant_reader(%s)", (role,))
    except RefprojError as error:
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        if sqlstate in ("22023", "42704"):  # refused (PUBLIC) or no such role: the input is wrong
            raise InvalidArgument(first_line(error.__cause__)) from error
        if isinstance(error, PermissionDenied):
            raise PermissionDenied(f"{error} (run it as the projection's owner)") from error
        raise
    print(f"granted {fmt.text(role)} read access to the refproj overview, detail and status, and refreshes")
    return 0


def _note(line: str) -> None:
    sys.stdout.flush()  # a hint follows the output: failing to write that (13) stays the one line
    print(line, file=sys.stderr)


def _progress(message: str) -> None:
    # Only for a person watching: a failure must stay the one line on stderr for scripts.
    if sys.stderr.isatty():
        print(f"  {message}", file=sys.stderr, flush=True)


def cmd_seed(args: argparse.Namespace) -> int:
    """Seeds --profile into the source tables (counts printed), then refreshes with no time limit
    unless --no-refresh; 4 when the source tables are missing, 7 for a bad profile or factor."""
    from refproj.seed import SEED_BASE_TIME, seed

    url = _url(args)
    with _database_errors(url), _connect(url) as conn:
        try:
            # Validates every argument before writing; empties and fills in one transaction.
            counts = seed(
                conn,
                args.profile,
                history_factor=args.history_factor,
                seed=args.seed,
                base_time=datetime.now(UTC) - timedelta(hours=1) if args.recent else SEED_BASE_TIME,
                progress=_progress,
                replace=args.replace,
            )
        except psycopg.errors.UndefinedTable as error:
            message = f"the source tables are missing in {fmt.shown(url)}: run `refproj migrate`"
            raise MigrationsNotApplied(message) from error
    summary = ", ".join(f"{value:,} {name}" for name, value in counts.items())
    print(f"seeded profile {args.profile}: {summary}")
    if args.no_refresh:
        print("the overview is not refreshed: run `refproj refresh`")
        return 0
    # The first refresh after a bulk load rebuilds run_facts whole: no time limit here.
    _progress("refreshing the overview")
    with Projection(url, read_reuse=0, staleness_bound=None, refresh_timeout=0) as proj:
        result = proj.refresh()
    print(f"refreshed: overview as of {result.as_of.isoformat()} ({result.refresh_ms:.1f} ms)")
    return 0


def _refuse_what_libpq_refuses(url: URL) -> None:
    """One connection attempt before serving: libpq checks some values only when it connects
    (``?sslmode=bogus``), and the service would run on with every request failing. Any other
    failure (the database is down) is not refused: the service starts and ``/readyz`` says so."""
    try:
        with _database_errors(url), _connect(url):
            pass
    except InvalidDatabaseUrl:
        raise
    except RefprojError:
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    """Blocks until interrupted; each worker reads $DATABASE_URL (set here from --database-url).
    14 when it cannot listen on --host/--port, 1 without refproj[web]."""
    try:
        from refproj.web.serve import listen, serve
    except ImportError as error:  # the web stack ships as the optional extra refproj[web]
        raise RefprojError(
            f"the HTTP service is not installed ({error.name or 'refproj.web'} missing):"
            " pip install 'refproj[web]'"
        ) from error
    url = database_url(args.database_url)
    _refuse_what_libpq_refuses(url)
    os.environ["DATABASE_URL"] = url_text(url)
    sock = listen(args.host, args.port, args.workers)
    serve(sock, workers=args.workers)
    return 0

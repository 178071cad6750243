"""The command line: readable tables, --json, and one-line errors with distinct exit codes."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from refproj.cli import main
from tests.world import World


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    w.failed_run("run_bad", "cin_personal", "12:00", "12:01", "connector_exit")
    return w


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_refresh_timeout_is_an_option_and_says_how_to_raise_it(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    try:
        code, out, err = run(capsys, "--database-url", db_url, "refresh", "--timeout", "0.3")
        assert (code, out) == (8, "")
        assert err == (
            "refproj: the database canceled the statement: canceling statement due to statement timeout"
            " (refresh timeout 0.3 s; raise it with --timeout, 0 for no limit)\n"
        )
        # Below PostgreSQL's millisecond it is one millisecond, not "no limit" (0 is the only one).
        code, out, err = run(capsys, "--database-url", db_url, "refresh", "--timeout", "0.0004")
        assert (code, out) == (8, "")
        assert err.endswith(" (refresh timeout 0.0004 s; raise it with --timeout, 0 for no limit)\n")
    finally:
        locker.close()
    code, out, err = run(capsys, "--database-url", db_url, "refresh", "--timeout", "0")
    assert (code, err) == (0, "")
    assert out.startswith("refreshed: overview as of ")
    assert run(capsys, "--database-url", db_url, "refresh", "--timeout", "-1") == (
        7,
        "",
        "refproj: --timeout must be a number of seconds from 0 to 86400, not -1.0\n",
    )


def test_refresh_list_and_show(world: World, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--database-url", db_url, "refresh")
    assert (code, err) == (0, "")
    assert out.startswith("refreshed: overview as of ")

    code, out, _ = run(capsys, "--database-url", db_url, "list")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "CONNECTION",
        "CONNECTOR",
        "STATUS",
        "HEALTH",
        "LAST",
        "RUN",
        "LAST",
        "SUCCESS",
        "FAILS",
        "RECORDS",
    ]
    assert lines[1].split()[:4] == ["cin_work", "acme", "active", "stale"]
    assert "run_ok succeeded 2026-01-05 11:05" in lines[1]
    assert lines[2].split()[:5] == ["cin_personal", "acme", "active", "failing", "(connector_exit)"]
    assert lines[-1].startswith("2 connections, as of ")

    code, out, _ = run(capsys, "--database-url", db_url, "list", "--json")
    envelope = json.loads(out)
    assert code == 0
    assert envelope["source_changed"] is False
    assert [row["connector_instance_id"] for row in envelope["connections"]] == ["cin_work", "cin_personal"]
    assert envelope["connections"][1]["last_run"]["failure_reason"] == "connector_exit"

    code, out, _ = run(capsys, "--database-url", db_url, "show", "cin_personal", "--json")
    assert code == 0
    detail = json.loads(out)
    assert [run["run_id"] for run in detail["recent_runs"]] == ["run_bad"]

    code, out, _ = run(capsys, "--database-url", db_url, "show", "cin_work")
    assert code == 0
    fields = {
        name: value.strip()
        for name, value in (line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    }
    assert fields["connection"] == "cin_work"
    assert fields["last success"] == "run_ok succeeded 2026-01-05 11:05"
    assert fields["unattributed runs"] == "0 (connector-wide, matching no connection)"
    assert out.splitlines()[-1].split()[:3] == ["run_ok", "succeeded", "2026-01-05T11:00:00+00:00"]


def test_status(world: World, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--database-url", db_url, "status", "--json")
    status = json.loads(out)
    assert code == 0
    assert status["source_changed"] is True
    assert status["refresh_count"] == 0
    run(capsys, "--database-url", db_url, "refresh")
    code, out, _ = run(capsys, "--database-url", db_url, "status")
    assert code == 0
    assert "source changed: no" in out
    assert "refreshes:      1" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["show", "nope"], 5, "refproj: no connection 'nope'\n"),
        (
            ["show", "acme"],
            6,
            (
                "refproj: 'acme' is a connector with 2 connections; name one connection id:"
                " cin_work, cin_personal\n"
            ),
        ),
        (["show", ""], 7, "refproj: connection id must not be empty\n"),
        (["list", "--connector", "a\x00b"], 7, "refproj: connector id must not contain NUL characters\n"),
    ],
)
def test_expected_failures_print_one_line(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    assert run(capsys, "--database-url", db_url, *argv) == (code, "", message)


def test_unreachable_and_unmigrated(empty_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--database-url", "postgresql://postgres@127.0.0.1:1/nowhere", "list")
    assert (code, out) == (3, "")
    assert err.startswith("refproj: database unreachable at postgresql://postgres@127.0.0.1:1/nowhere: ")
    assert err.count("\n") == 1
    code, out, err = run(capsys, "--database-url", empty_db_url, "status")
    assert (code, out) == (4, "")
    assert err.endswith("run `refproj migrate`\n")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "--database-url", "postgresql://postgres@127.0.0.1:1/nowhere", "migrate")
    assert code == 3
    assert err.count("\n") == 1


def test_migrate_creates_the_database(postgresql_proc: Any, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"{postgresql_proc.template_dbname}_cli"
    admin = f"postgresql://{postgresql_proc.user}@{postgresql_proc.host}:{postgresql_proc.port}/postgres"
    url = admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    try:
        assert run(capsys, "--database-url", url, "migrate", "--create-database")[0] == 0
        code, out, _ = run(capsys, "--database-url", url, "migrate", "--create-database")
        assert (code, out) == (0, f"migrated {url} to head\n")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version_num FROM refproj_alembic_version").fetchone() == ("0005",)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_percent_encoded_spaces_in_the_url_reach_libpq(
    postgresql_proc: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """#1: "%20" in the password and the database name is what psql accepts. refproj once decoded
    them, refused the URL ("unexpected spaces found") and printed the password in clear."""
    from refproj import Projection

    name = f"{postgresql_proc.template_dbname}_a b"
    server = f"{postgresql_proc.host}:{postgresql_proc.port}"
    admin = f"postgresql://{postgresql_proc.user}@{server}/postgres"
    # The test server trusts local connections, so the password is sent but not checked.
    url = f"postgresql://{postgresql_proc.user}:my%20secret@{server}/{name.replace(' ', '%20')}"
    shown = url.replace("my%20secret", "***")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    try:
        assert run(capsys, "--database-url", url, "migrate", "--create-database") == (
            0,
            f"migrated {shown} to head\n",
            "",
        )
        code, out, err = run(capsys, "--database-url", url, "status", "--json")
        assert (code, json.loads(out)["refresh_count"], err) == (0, 0, "")
        with Projection(url) as projection:
            assert projection.status().refresh_count == 0
        assert _alembic_current(url) == (0, "0005 (head)\n")
        # A URL refproj refuses is quoted with the password masked, however it is spelled: as
        # typed, with a raw space (no URL parser reads it), too.
        typed = "postgresql://u:my secret@h:badport/db"
        assert run(capsys, "--database-url", typed, "status") == (
            7,
            "",
            "refproj: not a database URL: 'postgresql://u:***@h:badport/db'\n",
        )
        code, out, err = run(capsys, "--database-url", url + "?bogusparam=1", "status")
        assert (code, out, err) == (
            7,
            "",
            f'refproj: not a database URL libpq reads (invalid URI query parameter: "bogusparam"):'
            f" {shown + '?bogusparam=1'!r}\n",
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_console_script_has_no_traceback(db_url: str) -> None:
    script = Path(sys.executable).parent / "refproj"
    result = subprocess.run(
        [str(script), "--database-url", db_url, "show", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (5, "", "refproj: no connection 'nope'\n")


def test_grant_reader(db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    role = f"{db.info.dbname}_cli_reader"
    db.execute(f'DROP ROLE IF EXISTS "{role}"')
    db.execute(f'CREATE ROLE "{role}"')
    try:
        code, out, err = run(capsys, "--database-url", db_url, "grant-reader", role)
        assert (code, err) == (0, "")
        assert (
            out == f"granted {role} read access to the refproj overview, detail and status, and refreshes\n"
        )
        assert db.execute(
            "SELECT has_function_privilege("
            "%s, 'refproj.refresh_connection_summary(boolean, boolean)', 'EXECUTE'),"
            " has_table_privilege(%s, 'spine_events', 'SELECT')",
            (role, role),
        ).fetchone() == (True, False)
        code, out, err = run(capsys, "--database-url", db_url, "grant-reader", "no_such_role_anywhere")
        assert (code, out) == (7, "")
        assert err == 'refproj: role "no_such_role_anywhere" does not exist\n'
    finally:
        db.execute(f'DROP OWNED BY "{role}"')
        db.execute(f'DROP ROLE "{role}"')


def test_grant_reader_to_a_role_named_Public(
    db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL reserves only lowercase public (an unquoted PUBLIC or Public folds to it): a
    real role "Public" gets read access when quoted, and nothing else does."""
    db.execute('CREATE ROLE "Public"')  # roles are cluster-wide: this test owns the name while it runs
    try:
        code, out, err = run(capsys, "--database-url", db_url, "grant-reader", '"Public"')
        assert (code, err) == (0, "")
        assert out == (
            'granted "Public" read access to the refproj overview, detail and status, and refreshes\n'
        )
        assert db.execute(
            "SELECT has_function_privilege('Public', 'refproj.connection_detail(text, int, timestamptz)',"
            " 'EXECUTE'),"
            " EXISTS (SELECT 1 FROM pg_proc, aclexplode(proacl) AS a"
            " WHERE pronamespace = 'refproj'::regnamespace AND a.grantee = 0)"
        ).fetchone() == (True, False)  # "Public" can read; PUBLIC (grantee 0) got nothing
        code, out, err = run(capsys, "--database-url", db_url, "grant-reader", "Public")
        assert (code, out, err) == (
            7,
            "",
            "refproj: refusing to grant refproj read access to 'Public': name one role\n",
        )
    finally:
        db.execute('DROP OWNED BY "Public"')
        db.execute('DROP ROLE "Public"')


# -- every command with bad arguments: one line on stderr, the documented exit code -------------

NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere"
COMMANDS: dict[str, list[str]] = {
    "migrate": ["migrate"],
    "refresh": ["refresh"],
    "status": ["status"],
    "list": ["list"],
    "show": ["show", "cin_work"],
    "verify": ["verify"],
    "seed": ["seed"],
    "grant-reader": ["grant-reader", "console_reader"],
    "bench": ["bench", "--profiles", "tiny"],
    "serve": ["serve", "--port", "1"],
    "browser-bench": ["browser-bench", "--base", "http://127.0.0.1:1"],
}
# These would start a server or a browser on a reachable database: walked with unusable URLs only.
URL_CHECK_ONLY = {"serve", "browser-bench"}


def test_the_walk_covers_every_command() -> None:
    from refproj.cli import _parser

    parser = _parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subcommands.choices) == set(COMMANDS)


# (argv, exit code, the one stderr line or its start) for each kind of bad input.
BAD_INPUTS: list[tuple[list[str], int, str]] = [
    (["show", "cin_work", "--runs", "-1"], 7, "refproj: run limit must be between 0 and 2147483647, not -1"),
    (
        ["show", "cin_work", "--runs", "2147483648"],
        7,
        "refproj: run limit must be between 0 and 2147483647, not 2147483648",
    ),
    (["show", "cin_work", "--runs", "many"], 2, "refproj show: argument --runs: invalid int value: 'many'"),
    (["show"], 2, "refproj show: the following arguments are required: CONNECTION"),
    (["show", ""], 7, "refproj: connection id must not be empty"),
    (["list", "--connector", "é" * 2049], 7, "refproj: connector id is longer than 4096 bytes (UTF-8)"),
    (["refresh", "--timeout", "soon"], 2, "refproj refresh: argument --timeout: not a number of seconds"),
    # One rule for every numeric option: not a number is usage (2); a number out of range,
    # nan or infinite is invalid input (7), like --runs -1 and --history-factor nan.
    (["verify", "--timeout", "1e9x"], 2, "refproj verify: argument --timeout: not a number of seconds"),
    *[
        (
            [command, "--timeout", text],
            7,
            f"refproj: --timeout must be a number of seconds from 0 to 86400, not {shown}\n",
        )
        for command in ("refresh", "verify")
        for text, shown in (
            ("-1", "-1.0"),
            ("nan", "nan"),
            ("inf", "inf"),
            ("1e400", "inf"),
            ("86401", "86401.0"),
        )
    ],
    # argparse takes "-inf" for the next option unless it is attached with "=" (README).
    (["refresh", "--timeout", "-inf"], 2, "refproj refresh: argument --timeout: expected one argument"),
    (
        ["refresh", "--timeout=-inf"],
        7,
        "refproj: --timeout must be a number of seconds from 0 to 86400, not -inf\n",
    ),
    # serve: every numeric option has a documented range (7 outside it), a host that is no
    # address is invalid input (7), an address it cannot listen on is 14; all before any worker.
    (["serve", "--port", "0"], 7, "refproj: --port must be from 1 to 65535, not 0\n"),
    (["serve", "--port", "65536"], 7, "refproj: --port must be from 1 to 65535, not 65536\n"),
    (["serve", "--port", "eighty"], 2, "refproj serve: argument --port: invalid int value: 'eighty'"),
    (["serve", "--workers", "0"], 7, "refproj: --workers must be from 1 to 64, not 0\n"),
    (["serve", "--workers", "100000"], 7, "refproj: --workers must be from 1 to 64, not 100000\n"),
    (["serve", "--workers", "many"], 2, "refproj serve: argument --workers: invalid int value: 'many'"),
    *[
        (
            ["serve", "--host", host],
            7,
            f"refproj: --host {host!r} is not an address or a name this machine resolves (",
        )
        for host in ("not a host!!", "256.1.1.1", "a\x00b")
    ],
    (
        ["serve", "--host", "192.0.2.1"],  # TEST-NET-1: no machine's own address
        14,
        "refproj: cannot listen on 192.0.2.1:8000: Cannot assign requested address\n",
    ),
    (["nosuchcommand"], 2, "refproj: argument COMMAND: invalid choice: 'nosuchcommand'"),
    ([], 2, "refproj: the following arguments are required: COMMAND"),
    (["status", "--bogus"], 2, "refproj: unrecognized arguments: --bogus"),
    (["seed", "--profile", "XL"], 7, "refproj: unknown profile 'XL'; choose one of tiny, S, M, L"),
    (["seed", "--history-factor", "0"], 7, "refproj: history factor must be a positive number, not 0.0"),
    (["seed", "--history-factor", "nan"], 7, "refproj: history factor must be a positive number, not nan"),
    (
        ["seed", "--history-factor", "1e300"],
        7,
        "refproj: history factor 1e+300 asks for more than 2,147,483,647 runs\n",
    ),
    # Its product with the runs is inf: once an OverflowError (exit 1), now the same refusal.
    (
        ["seed", "--history-factor", "1e308", "--replace"],
        7,
        "refproj: history factor 1e+308 asks for more than 2,147,483,647 runs\n",
    ),
    (
        ["seed", "--seed", "9223372036854775808"],
        7,
        "refproj: seed must be a whole number that fits in a bigint",
    ),
    (
        ["seed"],
        7,
        "refproj: the source tables already hold connectors; seed an empty database, or pass --replace",
    ),
    (
        ["grant-reader", "public"],
        7,
        "refproj: refusing to grant refproj read access to 'public': name one role",
    ),
    (
        ["grant-reader", "PUBLIC"],
        7,
        "refproj: refusing to grant refproj read access to 'PUBLIC': name one role",
    ),
    (
        ["grant-reader", '"public"'],
        7,
        "refproj: refusing to grant refproj read access to 'public': name one role\n",
    ),
    # Quoted, "PUBLIC" and "Public" are role names of their own (only "public" means PUBLIC).
    (["grant-reader", '"PUBLIC"'], 7, 'refproj: role "PUBLIC" does not exist\n'),
    (
        ["grant-reader", "Public"],
        7,
        "refproj: refusing to grant refproj read access to 'Public': name one role\n",
    ),
    (["grant-reader", '"nobody_here"'], 7, 'refproj: role "nobody_here" does not exist\n'),
    (["grant-reader", "nobody_here"], 7, 'refproj: role "nobody_here" does not exist'),
    (["grant-reader", ""], 7, "refproj: role must not be empty"),
    # What the user or the database wrote is escaped in a message as in the table: no raw ESC, no
    # line cut short at a line break, no U+202E turning the line around.
    (["grant-reader", "a\x1b[31mRED\nb"], 7, 'refproj: role "a\\x1b[31mRED\\nb" does not exist\n'),
    (["grant-reader", "a\u202eb\u2028c"], 7, 'refproj: role "a\\u202eb\\u2028c" does not exist\n'),
    (["show", "x\u2029\x9b"], 5, "refproj: no connection 'x\\u2029\\x9b'\n"),
    (
        ["serve", "--host", "\u202eevil\n"],
        7,
        "refproj: --host '\\u202eevil\\n' is not an address or a name this machine resolves (",
    ),
]


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err[:-1]


@pytest.mark.parametrize(("argv", "code", "line"), BAD_INPUTS, ids=lambda v: repr(v)[:60])
def test_bad_arguments_give_one_line_and_their_exit_code(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, line: str
) -> None:
    got, out, err = run(capsys, "--database-url", db_url, *argv)
    assert (got, out) == (code, "")
    assert _one_line(err).startswith(line.rstrip("\n"))
    if line.endswith("\n"):  # the whole line
        assert err == line


def test_serve_on_a_port_in_use_is_one_line_and_exit_14(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert run(capsys, "serve", "--port", str(port)) == (
            14,
            "",
            f"refproj: cannot listen on 127.0.0.1:{port}: Address already in use\n",
        )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_with_a_bad_database_url(
    name: str, empty_db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command, each kind of unusable database: exit code and exactly one stderr line. The URL
    is accepted before and after the command name."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    argv = COMMANDS[name]
    cases = [
        ("garbage", 7, "refproj: not a database URL: 'garbage'"),
        ("mysql://root@127.0.0.1/db", 7, "refproj: unsupported database URL scheme 'mysql'"),
        (
            "postgresql+asyncpg://u@127.0.0.1/db",
            7,
            "refproj: unsupported database URL scheme 'postgresql+asyncpg'",
        ),
        (
            "postgresql://u:pw@127.0.0.1/db?bogusparam=1",
            7,
            'refproj: not a database URL libpq reads (invalid URI query parameter: "bogusparam"):'
            " 'postgresql://u:***@127.0.0.1/db?bogusparam=1'",
        ),
        (
            "postgresql://u@127.0.0.1:99999/db",
            7,
            "refproj: the database URL's port must be from 1 to 65535, not 99999:",
        ),
        (
            empty_db_url + "%00x",
            7,
            f"refproj: the database URL must not contain NUL (%00): {empty_db_url + '%00x'!r}",
        ),
        # psycopg reads connect_timeout itself; refproj's own default once overrode it silently.
        (
            empty_db_url + "?connect_timeout=abc",
            7,
            "refproj: not a database URL libpq reads (bad value for connect_timeout: 'abc'):"
            f" {empty_db_url + '?connect_timeout=abc'!r}",
        ),
        (NOWHERE, 3, f"refproj: database unreachable at {NOWHERE}: "),
        # A value libpq refuses only when it connects: still the URL's fault, not the network's.
        (
            NOWHERE + "?sslmode=bogus",
            7,
            "refproj: the database URL has a value libpq refuses (connection is bad: invalid sslmode"
            f' value: "bogus"): {NOWHERE + "?sslmode=bogus"!r}',
        ),
    ]
    if name in URL_CHECK_ONLY:
        cases = cases[:7]
    elif name not in ("migrate", "bench"):  # these create what is missing
        cases.append((empty_db_url, 4, "refproj: "))
    for url, code, line in cases:
        for args in (["--database-url", url, *argv], [*argv, "--database-url", url]):
            got, out, err = run(capsys, *args)
            assert (got, out) == (code, ""), (args, err)
            assert _one_line(err).startswith(line), args


def test_a_url_libpq_refuses_stops_serve_before_it_serves(empty_db_url: str) -> None:
    """#3: serve once started with ?sslmode=bogus and answered 422 to every request, forever; now
    it tries one connection first and exits 7 with one line (as every other command does)."""
    with socket.create_server(("127.0.0.1", 0)) as free:
        port = free.getsockname()[1]
    url = empty_db_url + "?sslmode=bogus"
    serve = _console("--database-url", url, "serve", "--port", str(port), stdout=subprocess.PIPE)
    assert (serve.returncode, serve.stdout, serve.stderr) == (
        7,
        "",
        "refproj: the database URL has a value libpq refuses (connection is bad: invalid sslmode"
        f' value: "bogus"): {url!r}\n',
    )
    url = empty_db_url + "?connect_timeout=abc"
    listed = _console("--database-url", url, "list", stdout=subprocess.PIPE)
    assert (listed.returncode, listed.stdout, listed.stderr) == (
        7,
        "",
        f"refproj: not a database URL libpq reads (bad value for connect_timeout: 'abc'): {url!r}\n",
    )


def test_the_urls_connect_timeout_is_respected() -> None:
    """A server that accepts the TCP connection and never answers: the URL's connect_timeout=2
    ends the wait, not refproj's default of 5 s (which once overrode it)."""
    from refproj.settings import DEFAULT_CONNECT_TIMEOUT

    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/db?connect_timeout=2"
        started = time.monotonic()
        status = _console("--database-url", url, "status", stdout=subprocess.PIPE)
        waited = time.monotonic() - started
    assert (status.returncode, status.stdout) == (3, "")
    assert status.stderr.startswith(f"refproj: database unreachable at {url}: "), status.stderr
    assert 2 <= waited < DEFAULT_CONNECT_TIMEOUT, waited


def test_database_url_after_the_command(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--json", "--database-url", db_url)
    assert (code, err) == (0, "")
    assert json.loads(out)["refresh_count"] == 0
    # Given on both sides, the one after the command wins (argparse's last-one-wins).
    code, _, err = run(capsys, "--database-url", "garbage", "status", "--database-url", db_url)
    assert (code, err) == (0, "")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import refproj

    assert refproj.__version__ == "0.1.0"
    assert run(capsys, "--version") == (0, "refproj 0.1.0\n", "")


def test_migrate_and_seed_without_the_rights(
    db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A role without privileges: permission denied is exit 9 and one line, and nothing changes."""
    role = f"{db.info.dbname}_weak"
    db.execute(f'DROP ROLE IF EXISTS "{role}"')
    db.execute(f'CREATE ROLE "{role}" LOGIN')
    weak_url = db_url.replace("postgres@", f"{role}@", 1)
    assert weak_url != db_url
    World(db).siblings()
    try:
        for argv in (["seed", "--replace"], ["seed"], ["grant-reader", "postgres"]):
            code, out, err = run(capsys, "--database-url", weak_url, *argv)
            assert (code, out) == (9, ""), err
            assert "permission denied" in _one_line(err)
        # Migrating an empty database needs CREATE on its schema.
        db.execute("DROP SCHEMA refproj CASCADE")
        db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        db.execute("DROP TABLE IF EXISTS alembic_version")
        code, out, err = run(capsys, "--database-url", weak_url, "migrate")
        assert (code, out) == (9, ""), err
        assert "permission denied" in _one_line(err)
        assert db.execute("SELECT count(*) FROM connector_instances").fetchone() == (2,)
    finally:
        db.execute(f'DROP OWNED BY "{role}"')
        db.execute(f'DROP ROLE "{role}"')


def test_output_cut_short_by_a_closed_pipe_is_quiet(world: World, db_url: str) -> None:
    """`refproj list | head -1`: the reader closes the pipe; refproj ends without a traceback."""
    script = Path(sys.executable).parent / "refproj"
    process = subprocess.Popen(
        [str(script), "--database-url", db_url, "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command can have connected, let alone printed
    err = process.stderr.read()
    assert (process.wait(timeout=60), err) == (141, b"")


def test_ambiguous_show_names_the_candidates(
    world: World, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--database-url", db_url, "show", "acme") == (
        6,
        "",
        "refproj: 'acme' is a connector with 2 connections; name one connection id: cin_work, cin_personal\n",
    )


def test_libpq_query_options_reach_the_server_unchanged(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLAlchemy renders a space in a query value as "+", which libpq keeps literally:
    # "-c+lock_timeout=1000" used to reach the server ("unrecognized configuration parameter").
    from refproj.settings import libpq_url

    url = empty_db_url + "?options=-c%20lock_timeout%3D1000"
    assert run(capsys, "--database-url", url, "migrate")[0] == 0
    code, _, err = run(capsys, "--database-url", url, "seed")
    assert (code, err) == (0, "")
    code, _, err = run(capsys, "--database-url", url, "grant-reader", "pg_monitor")
    assert (code, err) == (0, "")
    assert libpq_url(url).endswith("?options=-c%20lock_timeout%3D1000")
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("1s",)
    # A "+" is a plus sign to libpq, so it stays one.
    assert libpq_url("postgresql://h/d?application_name=a+b") == "postgresql://h/d?application_name=a%2Bb"
    assert _alembic_current(url) == (0, "0005 (head)\n")


def _alembic_current(url: str) -> tuple[int, str]:
    """`alembic current` with DATABASE_URL=url: its exit code and stdout."""
    alembic = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(Path(__file__).parents[1] / "alembic.ini"), "current"],
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return alembic.returncode, alembic.stdout


def test_a_quoted_role_name_is_unquoted_once(
    db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One rule for a role name (CLI and SQL): as pg_roles spells it, or a double-quoted SQL
    identifier; PUBLIC is refused in every spelling (BAD_INPUTS)."""
    role = f'{db.info.dbname}_Mixed "Case"'
    quoted = '"' + role.replace('"', '""') + '"'
    db.execute(f"DROP ROLE IF EXISTS {quoted}")
    db.execute(f"CREATE ROLE {quoted}")
    try:
        for spelling in (quoted, role):
            code, out, err = run(capsys, "--database-url", db_url, "grant-reader", spelling)
            assert (code, err) == (0, ""), spelling
            assert out.startswith(f"granted {spelling} read access")
        assert db.execute("SELECT has_schema_privilege(%s, 'refproj', 'USAGE')", (role,)).fetchone() == (
            True,
        )
        # Not folded: the lower-case spelling is another (missing) role.
        code, _, err = run(capsys, "--database-url", db_url, "grant-reader", role.lower())
        assert (code, err) == (7, f'refproj: role "{role.lower()}" does not exist\n')
    finally:
        db.execute(f"DROP OWNED BY {quoted}")
        db.execute(f"DROP ROLE {quoted}")


def _console(*argv: str, shell_redirect: str = "", **popen: Any) -> subprocess.CompletedProcess[str]:
    """The installed console script, with a shell redirection of its stdout (`>&-`, `>/dev/full`)."""
    script = Path(sys.executable).parent / "refproj"
    return subprocess.run(
        ["sh", "-c", f'exec "$0" "$@" {shell_redirect}', str(script), *argv],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )


OUTPUT_COMMANDS = [["status"], ["list"], ["list", "--json"], ["show", "cin_work"], ["refresh"], ["verify"]]


@pytest.mark.parametrize("argv", OUTPUT_COMMANDS, ids=" ".join)
def test_output_that_cannot_be_written_is_one_line_and_exit_13(
    world: World, db: psycopg.Connection[Any], db_url: str, argv: list[str]
) -> None:
    closed = _console("--database-url", db_url, *argv, shell_redirect=">&-")
    assert (closed.returncode, closed.stderr) == (
        13,
        "refproj: cannot write the output: standard output is closed\n",
    )
    # Refused before doing anything: a refresh whose result nobody could see did not run.
    assert db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone() == (0,)
    full = _console("--database-url", db_url, *argv, shell_redirect=">/dev/full")
    assert (full.returncode, full.stderr) == (
        13,
        "refproj: cannot write the output: No space left on device\n",
    )
    help_full = _console(argv[0], "--help", shell_redirect=">/dev/full")
    assert (help_full.returncode, help_full.stderr) == (
        13,
        "refproj: cannot write the output: No space left on device\n",
    )


def test_a_refresh_on_a_read_only_server_exits_12(world: World, db_url: str) -> None:
    url = db_url + "?options=-c%20default_transaction_read_only%3Don"
    result = _console("--database-url", url, "refresh", stdout=subprocess.PIPE)
    assert (result.returncode, result.stdout) == (12, "")
    assert result.stderr.startswith("refproj: this server is read-only; refresh on the primary (")
    assert result.stderr.endswith("cannot execute nextval() in a read-only transaction)\n")
    assert result.stderr.count("\n") == 1


def test_list_of_an_overview_older_than_the_source_says_to_refresh(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `seed --no-refresh` the overview is empty: `list` must not read as "no connections"."""
    assert run(capsys, "--database-url", empty_db_url, "migrate")[0] == 0
    assert run(capsys, "--database-url", empty_db_url, "seed", "--no-refresh")[0] == 0
    code, out, err = run(capsys, "--database-url", empty_db_url, "list")
    assert code == 0
    assert out.splitlines()[-1].startswith("0 connections, as of ")
    assert out.endswith(", source changed since\n")
    assert err == (
        "refproj: the source tables changed after this overview was refreshed: run `refproj refresh`\n"
    )
    assert run(capsys, "--database-url", empty_db_url, "refresh")[0] == 0
    code, out, err = run(capsys, "--database-url", empty_db_url, "list")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("7 connections, as of ")


def test_ctrl_c_exits_130_with_one_line(world: World, db: psycopg.Connection[Any], db_url: str) -> None:
    """A real SIGINT to a real process, sent while its refresh waits for a lock the test holds."""
    import signal

    name = "refproj_cli_sigint"
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    script = Path(sys.executable).parent / "refproj"
    process = subprocess.Popen(
        [str(script), "--database-url", f"{db_url}?application_name={name}", "refresh", "--timeout", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
        )
        while db.execute(waiting, (name,)).fetchone() != (1,):
            assert process.poll() is None, process.communicate()
            db.execute("SELECT pg_sleep(0.05)")  # polling the condition itself
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        locker.close()
    assert (process.returncode, out, err) == (130, "", "refproj: interrupted\n")
    # The interrupted refresh was canceled on the server, not left waiting.
    assert db.execute(waiting, (name,)).fetchone() == (0,)

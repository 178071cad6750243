"""The console in a real headless Chromium (Debian's): the harness smoke CI runs, and a write that
reaches an open page through the event stream without a reload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from refproj.cli import main
from refproj.seed import seed
from refproj_bench.browser import launched_browser
from tests.web_server import running_server
from tests.world import World

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def tiny_db(db: psycopg.Connection[Any], db_url: str) -> tuple[str, int]:
    """The tiny profile seeded and refreshed; (its URL, visible connections)."""
    seed(db, "tiny", base_time=datetime.now(UTC) - timedelta(hours=1))
    db.execute("SELECT refproj.refresh_connection_summary()")
    row = db.execute("SELECT count(*) FROM refproj.connection_summary").fetchone()
    assert row is not None
    return db_url, int(row[0])


@pytest.fixture
def tiny(tiny_db: tuple[str, int]) -> Iterator[tuple[str, int]]:
    """The tiny profile served; (server base URL, visible connections)."""
    with running_server(tiny_db[0]) as (base, _app):
        yield base, tiny_db[1]


def test_harness_smoke_on_tiny_with_check(tiny: tuple[str, int], tmp_path: Path, capsys: Any) -> None:
    base, visible = tiny
    code = main(
        ["browser-bench", "--base", base, "--route", "/dashboard/runs", "--check", "--output", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    [results] = (tmp_path / "results").glob("browser-*.json")
    loads = json.loads(results.read_text())["loads"]
    assert [(load["viewport"], load["cache"]) for load in loads] == [
        ("desktop", "cold"),
        ("desktop", "warm"),
        ("mobile", "cold"),
        ("mobile", "warm"),
    ]
    for load in loads:
        assert load["status"] == 200 and load["settled"] and not load["failed"]
        assert (load["console"], load["page_errors"], load["failed_requests"]) == ([], [], [])
        # The list is read once per load, inside the document, never stacked.
        assert [read["kind"] for read in load["list_reads"]] == ["navigation"]
        assert load["list_reads_stacked"] is False
        assert load["lcp_ms"] is not None and load["fcp_ms"] is not None
    assert "| `/dashboard/runs` | desktop | cold | 200 |" in out
    with launched_browser() as browser:
        page = browser.new_page()
        page.goto(base + "/dashboard/runs")
        assert page.locator("tr[data-connection]").count() == visible == 7


def test_harness_without_a_browser_is_a_setup_error(
    tiny: tuple[str, int], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHROME_BIN", str(tmp_path / "no-such-chromium"))
    code = main(["browser-bench", "--base", tiny[0], "--output", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    missing = tmp_path / "no-such-chromium"
    assert err == f"refproj: no Chromium at {missing} (apt-get install chromium, or set CHROME_BIN)\n"


def test_a_write_reaches_an_open_page_through_the_event_stream(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    world = World(db)
    world.siblings()
    world.succeeded_run("run_ok", "cin_work", "10:00", "10:05")
    world.refresh()
    # The server's own watcher refreshes after the write; nobody calls refresh.
    with (
        running_server(db_url, projection_options={"staleness_bound": 1.0}) as (base, _app),
        launched_browser() as browser,
    ):
        page = browser.new_page()
        page.goto(base + "/dashboard/runs")
        page.wait_for_function("document.documentElement.dataset.settled === '1'")
        page.evaluate("window.__sameDocument = true")
        work = page.locator('tr[data-connection="cin_work"]')
        assert "succeeded" in work.inner_text()
        world.failed_run("run_bad", "cin_work", "11:00", "11:05", "connector_exit")
        page.wait_for_function(
            "document.querySelector('tr[data-connection=\"cin_work\"]').innerText.includes('connector_exit')",
            timeout=30_000,
        )
        assert "failing" in work.inner_text()
        # Updated in place: the same document, one navigation, at least one live update.
        assert page.evaluate("window.__sameDocument") is True
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert int(page.evaluate("document.documentElement.dataset.updates")) >= 1


def test_side_by_side_serves_the_old_design_refproj_and_the_floor(tiny_db: tuple[str, int]) -> None:
    """The comparison's three pages on tiny: the old design reads the list three times, stacked;
    refproj and the floor read it once, inside the document; every page shows its rows."""
    from refproj_bench.browser_run import FLOOR, OLD, REFPROJ, bench_server, side_by_side

    with bench_server(tiny_db[0]) as base, launched_browser() as browser:
        figures, loads = side_by_side(base, browser, repeat=1)
    assert [(load.route, load.cache, load.failed) for load in loads] == [
        (OLD, "cold", False),
        (REFPROJ, "cold", False),
        (FLOOR, "cold", False),
    ]
    assert [len(load.list_reads) for load in loads] == [3, 1, 1]
    assert [load.list_reads_stacked for load in loads] == [True, False, False]
    assert all(load.console == [] and load.failed_requests == [] for load in loads)
    assert figures["old_over_refproj"] is not None and figures["refproj_over_floor"] is not None


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_health_and_relative_times_change_on_an_open_page_with_no_write(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    """A success 50 s ago with a 70 s limit: the open page says "just now", healthy and current;
    at 60 s the text advances in place (no fetch), and just after valid_until (20 s on) one
    fragment fetch shows stale (past_max_staleness), with no write, no refresh and no reload."""
    world = World(db)
    world.connector("acme", manifest={"refresh_policy": {"max_staleness_seconds": 70}})
    world.connection("cin_work")
    with running_server(db_url) as (base, _app), launched_browser() as browser:
        end = datetime.now(UTC) - timedelta(seconds=50)
        world.succeeded_run("run_ok", "cin_work", (end - timedelta(seconds=5)).isoformat(), end.isoformat())
        world.refresh()
        page = browser.new_page()
        errors = _console_errors(page)
        page.goto(base + "/dashboard/runs")
        detail = browser.new_page()  # the detail page follows the same moment
        detail_errors = _console_errors(detail)
        detail.goto(base + "/dashboard/runs/cin_work")
        assert detail.locator("h1 .badge").inner_text() == "healthy"
        row = "document.querySelector('tr[data-connection=\"cin_work\"]')"
        badge, success = (
            f"{row}.querySelector('.badge')",
            f"{row}.querySelector('[data-label=\"Last success\"] time')",
        )
        freshness = f"{row}.querySelector('[data-label=\"Freshness\"] div').firstChild.textContent"
        assert page.evaluate(f"[{badge}.textContent, {success}.textContent, {freshness}]") == [
            "healthy",
            "just now",
            "current",
        ]
        page.wait_for_function(f"{success}.textContent === '1 min ago'", timeout=30_000)
        assert page.evaluate("document.documentElement.dataset.updates") is None  # advanced in place
        page.wait_for_function(f"{badge}.textContent === 'stale'", timeout=40_000)
        assert page.evaluate(
            f"[{badge}.textContent, {row}.querySelector('.badge + .reason').textContent,"
            f" {freshness}, document.documentElement.dataset.updates]"
        ) == ["stale", "past_max_staleness", "stale", "1"]
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        detail.wait_for_function(
            "document.querySelector('h1 .badge').textContent === 'stale'", timeout=10_000
        )
        assert detail.locator("dl.facts dd").nth(3).inner_text() == "stale (past_max_staleness)"
        assert (errors, detail_errors) == ([], [])


def test_one_long_word_never_widens_the_page(db: psycopg.Connection[Any], db_url: str) -> None:
    long_id = "0123456789abcdef" * 4
    world = World(db)
    world.connector("acme", display_name="C" * 300)
    world.connection(long_id, display_name="N" * 480)
    world.failed_run("run_" + "r" * 200, long_id, "10:00", "10:05", "reason_" + "x" * 400)
    world.refresh()
    with running_server(db_url) as (base, _app), launched_browser() as browser:
        for width, height in ((1280, 900), (390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height})
            for route in ("/dashboard/runs", f"/dashboard/runs/{long_id}"):
                page.goto(base + route)
                assert page.locator("h1").first.inner_text() != ""
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (width, route)
            page.close()


def test_a_page_whose_connection_is_deleted_says_so(db: psycopg.Connection[Any], db_url: str) -> None:
    world = World(db)
    world.siblings()
    world.succeeded_run("run_ok", "cin_work", "10:00", "10:05")
    world.refresh()
    with running_server(db_url) as (base, _app), launched_browser() as browser:
        page = browser.new_page()
        errors = _console_errors(page)
        page.goto(base + "/dashboard/runs/cin_work")
        page.wait_for_function("document.documentElement.dataset.settled === '1'")
        db.execute("DELETE FROM connector_instances WHERE connector_instance_id = 'cin_work'")
        world.refresh()
        page.wait_for_function("document.documentElement.dataset.gone === '1'", timeout=30_000)
        assert page.locator("main h1").all_inner_texts() == ["This connection no longer exists"]
        assert page.locator("main table").count() == 0  # no old data left on screen
        assert errors == []


def test_the_connector_filter_updates_live(db: psycopg.Connection[Any], db_url: str) -> None:
    with (
        running_server(db_url, projection_options={"staleness_bound": 1.0}) as (base, _app),
        launched_browser() as browser,
    ):
        page = browser.new_page()
        page.goto(base + "/dashboard/runs")
        page.wait_for_function("document.documentElement.dataset.settled === '1'")
        options = "[...document.querySelectorAll('#connector option')].map(o => o.textContent)"
        assert page.evaluate(options) == ["All connectors"]
        world = World(db)
        world.connector("acme", display_name="Acme")
        world.connector("beta")
        world.connection("cin_work")
        world.connection("beta_one", "beta")
        page.wait_for_function(f"{options}.length === 3", timeout=30_000)
        assert page.evaluate(options) == ["All connectors", "Acme", "beta"]


def test_every_id_links_to_its_own_detail(db: psycopg.Connection[Any], db_url: str) -> None:
    ids = [".", "..", "a/b", "%", "ünïcødé ✓", "a b?c#d"]
    world = World(db)
    world.connector("acme")
    for minute, connection_id in enumerate(ids):
        world.connection(connection_id, created=f"09:{minute:02d}")
    world.refresh()
    with running_server(db_url) as (base, _app), launched_browser() as browser:
        page = browser.new_page()
        page.goto(base + "/dashboard/runs")
        links = page.evaluate(
            "[...document.querySelectorAll('tr[data-connection] a')]"
            ".map(a => [a.closest('tr').dataset.connection, a.href])"
        )
        assert [connection_id for connection_id, _ in links] == ids
        for connection_id, href in links:
            response = page.goto(href)
            assert response is not None and response.status == 200, href
            assert page.locator("dd.id").inner_text() == connection_id


NOT_FOUND_CONSOLE = [
    {
        "type": "error",
        "text": "Failed to load resource: the server responded with a status of 404 (Not Found)",
    }
]


def test_a_failed_document_ends_its_load_at_once(tiny: tuple[str, int], tmp_path: Path, capsys: Any) -> None:
    """A 404, JSON or HTML, is a failed load (exit 1, its status said) the moment it arrives: no
    wait for a page that will never settle, no timeout reported as a page error, each console
    message once."""
    base, _ = tiny
    argv = ["browser-bench", "--base", base, "--route", "/nope", "--route", "/dashboard/runs/nope"]
    code = main([*argv, "--viewport", "desktop", "--output", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        "refproj: /nope (desktop, cold) failed to load: status 404 (application/json)",
        "refproj: /nope (desktop, warm) failed to load: status 404 (application/json)",
        "refproj: /dashboard/runs/nope (desktop, cold) failed to load: status 404 (text/html; charset=utf-8)",
        "refproj: /dashboard/runs/nope (desktop, warm) failed to load: status 404 (text/html; charset=utf-8)",
    ]
    [results] = (tmp_path / "results").glob("browser-*.json")
    for load in json.loads(results.read_text())["loads"]:
        assert (load["status"], load["settled"], load["failed"]) == (404, False, True)
        assert (load["console"], load["page_errors"], load["failed_requests"]) == (NOT_FOUND_CONSOLE, [], [])
        assert load["wall_ms"] < 10_000  # not the settle timeout (120 s)


def test_harness_argument_and_server_problems_are_exit_2_before_anything_is_created(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path, capsys: Any
) -> None:
    from tests.web_server import free_port

    nobody = f"http://127.0.0.1:{free_port()}"
    cases = [
        (
            ["--base", nobody],
            f"refproj: no server answers at {nobody} (ConnectError: [Errno 111] Connection refused)",
        ),
        (
            ["--base", "not-a-url"],
            "refproj: --base 'not-a-url' is not an http(s) URL such as http://127.0.0.1:8000",
        ),
        (["--compare", "XL"], "refproj: unknown profile 'XL' in --compare; choose from tiny, S, M, L"),
        (["--compare", "S,ZZ"], "refproj: unknown profile 'ZZ' in --compare; choose from tiny, S, M, L"),
        (["--compare", "tiny", "--repeat", "0"], "refproj: --repeat must be at least 1, not 0"),
        (
            ["--compare", "tiny", "--base", nobody],
            "refproj: --compare starts its own servers and pages; it takes no --base or --route",
        ),
        (["--route", "dashboard"], "refproj: --route 'dashboard' must be a path starting with /"),
    ]
    for args, line in cases:
        code = main(["browser-bench", "--database-url", db_url, *args, "--output", str(tmp_path)])
        out, err = capsys.readouterr()
        assert (code, out, err) == (2, "", line + "\n"), args
    created = db.execute(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'refproj_bench_browser%'"
    ).fetchone()
    assert created == (0,)
    assert not (tmp_path / "results").exists()


def test_harness_measures_a_token_server(
    tiny_db: tuple[str, int], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--token (default $REFPROJ_API_TOKEN): each browser profile holds the cookie ?token= sets."""
    argv = [
        "browser-bench",
        "--route",
        "/dashboard/runs",
        "--viewport",
        "desktop",
        "--check",
        "--output",
        str(tmp_path),
    ]
    with running_server(tiny_db[0], token="s3cret") as (base, _app):
        monkeypatch.delenv("REFPROJ_API_TOKEN", raising=False)
        assert main([*argv, "--base", base]) == 2
        assert (
            capsys.readouterr().err
            == f"refproj: {base} needs a token: pass --token or set REFPROJ_API_TOKEN\n"
        )
        assert main([*argv, "--base", base, "--token", "wrong"]) == 2
        assert capsys.readouterr().err == f"refproj: {base} rejected the token\n"
        monkeypatch.setenv("REFPROJ_API_TOKEN", "s3cret")
        code = main([*argv, "--base", base])
        assert (code, capsys.readouterr().err) == (0, "")
    [results] = (tmp_path / "results").glob("browser-*.json")
    loads = json.loads(results.read_text())["loads"]
    assert [(load["status"], load["settled"], len(load["list_reads"])) for load in loads] == [
        (200, True, 1)
    ] * 2


def test_browser_goals_are_goal_table_lines() -> None:
    """Each goal of the browser figure in the benchmark's goal form, for the profiles compared."""
    from refproj_bench.browser_run import _goals

    assert _goals({"S": {"old_over_refproj": 12.5}, "M": {"refproj_over_floor": 1.6}}) == [
        {
            "figure": "cold LCP old / refproj at S",
            "goal": ">= 10x",
            "profile": "S",
            "measured": "12.50x",
            "value": 12.5,
            "met": True,
        },
        {
            "figure": "cold LCP refproj / floor at M",
            "goal": "<= 1.5x",
            "profile": "M",
            "measured": "1.60x",
            "value": 1.6,
            "met": False,
        },
    ]
    assert _goals({"M": {"refproj_over_floor": None}})[0]["met"] is False

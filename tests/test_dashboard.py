"""The owner console pages (/dashboard/runs, /dashboard/runs/{connection}) served by a real uvicorn
over the real database: what each page shows, in which order, and its error pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import psycopg
import pytest

from refproj import InvalidIdentifier, Projection
from refproj.cli import main
from tests.test_properties import incompressible
from tests.web_server import running_server
from tests.world import World


def _world(db: psycopg.Connection[Any]) -> World:
    """acme: cin_work (succeeded, then failed with connector_exit and a known gap), cin_personal
    (never ran), a legacy run nobody owns, a retired setup shell; beta: beta_one (succeeded)."""
    world = World(db)
    world.connector("acme", display_name="Acme")
    world.connection("cin_work", created="09:00", display_name="Work account")
    world.connection("cin_personal", created="09:05")
    world.connection(
        "cin_shell",
        status="revoked",
        source_binding={"kind": "browser_enrollment_shell"},
        created="09:10",
        revoked="09:20",
    )
    world.succeeded_run("run_ok", "cin_work", "10:00", "10:05")
    world.event("run_bad", "run.started", "11:00", identity="cin_work")
    world.event(
        "run_bad",
        "run.failed",
        "11:05",
        status="failed",
        identity="cin_work",
        data={"reason": "connector_exit", "known_gaps": ["orders:rate_limited"]},
    )
    world.event("run_legacy", "run.completed", "11:30", status="succeeded")
    world.connector("beta")
    world.connection("beta_one", "beta", created="08:00")
    world.succeeded_run("run_b1", "beta_one", "09:50", "10:00", connector="beta")
    db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, connector_id, stream, record_count,"
        " current_record_json_bytes, record_history_json_bytes, blob_bytes) VALUES"
        " ('cin_work', 'acme', 'messages', 1234, 2000, 500, 0)"
    )
    world.refresh()
    return world


@pytest.fixture
def console(db: psycopg.Connection[Any], db_url: str) -> Iterator[httpx.Client]:
    _world(db)
    with running_server(db_url) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        yield client


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr id="row-\d+" data-connection="([^"]+)">', html)


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_list_page_shows_every_visible_connection_in_overview_order(console: httpx.Client) -> None:
    response = console.get("/dashboard/runs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    # The document carries the list read, and says so for the browser harness.
    assert response.headers["server-timing"].startswith("overview;dur=")
    html = response.text
    assert _rows(html) == ["cin_work", "cin_personal", "beta_one"]  # connector, then created_at
    text = _text(html)
    assert "3 connections · 1 failing · 1 idle · 1 stale" in text
    work = html.split('data-connection="cin_work"')[1].split("</tr>")[0]
    assert '<a href="/dashboard/runs/cin_work">Work account</a>' in work
    assert '<span class="badge state-failing">failing</span>' in work
    assert '<span class="run-failed">failed</span>' in work
    assert "connector_exit" in work
    assert '<td data-label="Records" class="num"><div>1,234</div></td>' in work
    assert '<td data-label="Retained" class="num"><div>0 B</div></td>' in work
    personal = html.split('data-connection="cin_personal"')[1].split("</tr>")[0]
    assert '<span class="badge state-idle">idle</span>' in personal and "never_run" in personal


def test_list_page_filters_by_connector_and_offers_every_connector(console: httpx.Client) -> None:
    html = console.get("/dashboard/runs", params={"connector_id": "beta"}).text
    assert _rows(html) == ["beta_one"]
    assert re.findall(r'<option value="([^"]*)"', html) == ["", "acme", "beta"]
    assert '<option value="beta" selected>' in html
    empty = console.get("/dashboard/runs", params={"connector_id": "nobody"}).text
    assert _rows(empty) == [] and "No connections for connector nobody." in _text(empty)


def test_detail_page_shows_runs_reasons_gaps_streams_and_unattributed(console: httpx.Client) -> None:
    response = console.get("/dashboard/runs/cin_work")
    assert response.status_code == 200
    text = _text(response.text)
    assert "Work account failing" in text
    assert "Unattributed runs of acme 1" in text  # run_legacy: two active siblings, nobody's
    runs = re.findall(r'<td class="name id">([^<]+)</td>', response.text)
    assert runs == ["run_bad", "run_ok"]  # newest first
    assert "connector_exit" in text and "orders:rate_limited" in text
    gaps = re.findall(r"<td data-label=\"Known gaps\"><div class=\"reason\">([^<]*)<", response.text)
    assert gaps == ["orders:rate_limited", "none"]  # a run with no gaps says so
    assert "messages 1,234 2.5 KB" in text


def test_detail_page_errors_are_pages_with_the_right_status(console: httpx.Client) -> None:
    missing = console.get("/dashboard/runs/nope")
    assert missing.status_code == 404
    assert "No such connection" in missing.text
    ambiguous = console.get("/dashboard/runs/acme")
    assert ambiguous.status_code == 409
    candidates = re.findall(r'<li><a href="/dashboard/runs/([^"]+)">', ambiguous.text)
    assert candidates == ["cin_work", "cin_personal"]  # overview order
    shell = console.get("/dashboard/runs/cin_shell")
    assert shell.status_code == 404


def test_a_browser_opens_the_console_with_the_token_once(db: psycopg.Connection[Any], db_url: str) -> None:
    """With REFPROJ_API_TOKEN set a page load cannot carry a bearer header: ?token= once sets an
    HttpOnly cookie and redirects to the same URL without the token; the cookie then opens the
    pages and the event stream, and a wrong token opens nothing."""
    _world(db)
    with (
        running_server(db_url, token="s3cret") as (base, _app),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        assert client.get("/dashboard/runs").status_code == 401
        assert client.get("/dashboard/runs", params={"token": "wrong"}).status_code == 401
        assert client.get("/_ref/connectors", params={"token": "s3cret"}).status_code == 401
        opened = client.get("/dashboard/runs", params={"token": "s3cret", "connector_id": "beta"})
        assert opened.status_code == 303
        assert opened.headers["location"] == "/dashboard/runs?connector_id=beta"
        assert opened.headers["set-cookie"] == "refproj_token=s3cret; HttpOnly; Path=/; SameSite=strict"
        page = client.get(opened.headers["location"])  # the client keeps the cookie, as a browser does
        assert page.status_code == 200 and _rows(page.text) == ["beta_one"]
        assert client.get("/_ref/connectors/cin_work").status_code == 200
        # The redirect keeps the path as sent: an encoded id stays encoded.
        kept = client.get("/dashboard/runs/cin%5Fwork", params={"token": "s3cret"})
        assert (kept.status_code, kept.headers["location"]) == (303, "/dashboard/runs/cin%5Fwork")


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """Every foreground/background pair the stylesheet uses for text, by WCAG 2's formula."""
    from importlib.resources import files

    css = (files("refproj.web") / "templates" / "console.css").read_text()
    var = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css))
    pairs = [
        ("fg", "bg"),
        ("muted", "bg"),
        ("muted", "band"),
        ("fg", "band"),
        ("ok", "ok-bg"),
        ("warn", "warn-bg"),
        ("bad", "bad-bg"),
        ("info", "info-bg"),
        ("fg", "idle-bg"),
        ("ok", "bg"),
        ("bad", "bg"),
        ("warn", "band"),
    ]
    for fg, bg in pairs:
        light, dark = sorted([_luminance(var[fg]), _luminance(var[bg])], reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 6.0, (fg, bg)
    assert re.findall(r"color: (#[0-9a-f]{6})", css) == ["#0550ae"]  # links; 7.6:1 on white
    assert (_luminance("#ffffff") + 0.05) / (_luminance("#0550ae") + 0.05) >= 6.0


def _page_error(response: httpx.Response) -> tuple[int, str, str, str]:
    """(status, content type, <h1>, message) of an HTML error page."""
    h1 = re.search(r"<h1>([^<]*)</h1>", response.text)
    message = re.search(r'<p class="message">([^<]*)</p>', response.text)
    return (
        response.status_code,
        response.headers["content-type"],
        unescape(h1.group(1)) if h1 else "",
        unescape(message.group(1)) if message else "",
    )


def test_browser_facing_errors_are_html_pages_with_the_api_status(console: httpx.Client) -> None:
    html = "text/html; charset=utf-8"
    assert _page_error(console.get("/dashboard/runs/")) == (
        404,
        html,
        "No such connection",
        "This address names no connection.",
    )
    too_long = console.get("/dashboard/runs", params={"connector_id": "c" * 4097})
    assert _page_error(too_long) == (
        422,
        html,
        "Bad address",
        "connector id is longer than 4096 bytes (UTF-8)",
    )
    not_utf8 = (
        "the address is not UTF-8 text: an id must be Unicode text without lone surrogates (U+D800-U+DFFF)"
    )
    for address in ("/dashboard/runs/%ED%A0%80", "/dashboard/runs?connector_id=%ED%A0%80"):
        assert _page_error(console.get(address)) == (422, html, "Bad address", not_utf8)
    twice = console.get("/dashboard/runs?connector_id=acme&connector_id=beta")
    assert _page_error(twice) == (422, html, "Bad address", "connector_id is given 2 times; give it once")
    assert _page_error(console.get("/dashboard/nowhere"))[:3] == (404, html, "No such page")
    # #5: ?at= is read as the API reads it (it once answered 200, ignored).
    bad_time = "at must be an ISO-8601 time with a UTC offset, e.g. 2026-01-05T12:00:00Z"
    for address in ("/dashboard/runs?at=garbage", "/dashboard/runs/cin_work?at=garbage"):
        assert _page_error(console.get(address)) == (422, html, "Bad address", bad_time)
    at = console.get("/dashboard/runs", params={"at": "2030-01-05T14:00:00+02:00"})
    assert (at.status_code, "health and freshness as of 2030-01-05 12:00:00 UTC</caption>" in at.text) == (
        200,
        True,
    )
    missing = _page_error(console.get("/dashboard/runs/nope"))
    assert missing[:3] == (404, html, "No such connection")
    # The live update of a page whose connection is gone: an expected state, not an error.
    gone = console.get("/dashboard/runs/nope", params={"fragment": "1"})
    assert _page_error(gone)[:3] == (200, html, "This connection no longer exists")
    assert "<div data-gone>" in gone.text


def test_the_401_page_explains_how_to_sign_in(db: psycopg.Connection[Any], db_url: str) -> None:
    _world(db)
    with (
        running_server(db_url, token="s3cret") as (base, _app),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        page = client.get("/dashboard/runs/cin_work")
        assert _page_error(page) == (
            401,
            "text/html; charset=utf-8",
            "Sign in to the console",
            "This service needs its token (REFPROJ_API_TOKEN). Open this address once with"
            " ?token=<token> added; the service then keeps the token in a cookie and every"
            " console page and live update works without it.",
        )
        assert page.headers["www-authenticate"] == "Bearer"
        assert client.get("/_ref/connectors").headers["content-type"] == "application/json"


def test_links_name_every_id_as_one_segment_or_in_the_query(console: httpx.Client) -> None:
    from refproj.web.dashboard import detail_href

    assert [detail_href("", i) for i in (".", "..", "a/b", "%", "ü ✓", "...")] == [
        "/dashboard/runs/?connection=.",
        "/dashboard/runs/?connection=..",
        "/dashboard/runs/a%2Fb",
        "/dashboard/runs/%25",
        "/dashboard/runs/%C3%BC%20%E2%9C%93",
        "/dashboard/runs/...",
    ]
    assert console.get("/dashboard/runs/?connection=cin_work").status_code == 200
    twice = console.get("/dashboard/runs/?connection=cin_work&connection=beta_one")
    assert _page_error(twice)[:3] == (422, "text/html; charset=utf-8", "Bad address")


def test_a_long_connection_id_opens_everywhere_it_is_listed(
    db: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 2,600-byte connection id (random, as the source table's key holds it) was listed and
    linked, but get(), show and its detail page refused it (over 1,000 characters): every id up to
    4,096 bytes opens now. A compressible id over that (storable: it compresses) is listed without
    a link, and get() refuses it by name."""
    world = World(db)
    world.connector("acme", display_name="Acme")
    long_id, huge_id = incompressible(8, 2600), "h" * 5000
    world.connection(long_id, created="09:00", display_name="Long")
    world.connection(huge_id, created="09:05", display_name="Huge")
    world.succeeded_run("run_long", long_id, "10:00", "10:05")
    world.refresh()
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        assert [row["connector_instance_id"] for row in proj.list()] == [long_id, huge_id]
        assert proj.get(long_id)["last_run"]["run_id"] == "run_long"
        with pytest.raises(InvalidIdentifier) as refused:
            proj.get(huge_id)
        assert str(refused.value) == "connection id is longer than 4096 bytes (UTF-8)"
    assert main(["--database-url", db_url, "show", long_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["connector_instance_id"] == long_id
    with running_server(db_url) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/dashboard/runs")
        assert page.status_code == 200
        links = re.findall(r'<a href="(/dashboard/runs/[^"]+)">([^<]*)</a>', page.text)
        assert links == [(f"/dashboard/runs/{long_id}", "Long")]
        assert "Huge" in page.text  # listed, not linked
        detail = client.get(links[0][0])
        assert detail.status_code == 200
        assert long_id in detail.text and "run_long" in detail.text
        api = client.get(f"/_ref/connectors/{long_id}")
        assert (api.status_code, api.json()["connector_instance_id"]) == (200, long_id)
        # The longest id get() takes, percent-encoded at 3 characters a byte, reaches the service.
        widest = "é" * 2048
        assert client.get(f"/_ref/connectors/{widest}").json() == {
            "error": "not_found",
            "message": f"no connection '{widest}'",
        }


def test_ids_and_names_are_shown_as_the_cli_shows_them_and_linked_exactly(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    """#4: U+202E, ESC and \\x01 in ids and names reached the page raw (text, and the
    data-connection attribute); the CLI's one display escape (refproj._format.text) now applies to
    every value the console prints, while a link and a form value keep the exact id."""
    world = World(db)
    world.connector("evil\u202e", display_name="Ev\u202eil")
    world.connection("c\x1b[31m\x01", "evil\u202e", created="09:00", display_name="na\u202eme")
    world.succeeded_run("run\x1b", "c\x1b[31m\x01", "10:00", "10:05", connector="evil\u202e")
    world.refresh()
    with running_server(db_url) as (base, _app), httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/dashboard/runs").text
        detail = client.get("/dashboard/runs/c%1B%5B31m%01")
    assert '<tr id="row-1" data-connection="c\\x1b[31m\\x01">' in page
    assert '<a href="/dashboard/runs/c%1B%5B31m%01">na\\u202eme</a>' in page
    assert '<span class="sub">Ev\\u202eil · ' in page
    # The filter sends the connector id back: its value is the id itself (HTML-escaped only).
    assert '<option value="evil\u202e">Ev\\u202eil</option>' in page
    assert [page.count(c) for c in "\x1b\x01\u202e"] == [0, 0, 1]
    assert detail.status_code == 200
    assert '<dd class="id">c\\x1b[31m\\x01</dd>' in detail.text
    assert '<td class="name id">run\\x1b</td>' in detail.text
    assert [detail.text.count(c) for c in "\x1b\x01\u202e"] == [0, 0, 0]

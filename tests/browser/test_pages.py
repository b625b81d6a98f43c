"""The console with bounded API answers: it follows the event log's pages, and
reads an execution itself when a list left its input out."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Server

pytestmark = pytest.mark.browser


@pytest.fixture
def server(console_server: Server) -> Server:
    return console_server


def settled(server: Server, execution_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        execution = dict(server.api("GET", f"/executions/{execution_id}"))
        if execution["status"] in ("completed", "failed"):
            return execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.1)


def test_the_timeline_follows_every_page_of_the_log(server: Server, page: Page) -> None:
    given = {"slow": False, "items": ["mug", "lamp"], "pack_seconds": 0.05}
    started = server.api("POST", "/executions", {"workflow": "console_demo", "input": given}, 202)
    settled(server, started["execution_id"])
    asked: list[str] = []

    def small_pages(route: Route) -> None:  # pages of 3 events: the console must follow next_from
        parts = urlsplit(route.request.url)
        query = dict(parse_qsl(parts.query))
        query["limit"] = "3"
        asked.append(query.get("from", "0"))
        route.continue_(url=urlunsplit(parts._replace(query=urlencode(query))))

    page.route("**/events?*", small_pages)
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    events = server.api("GET", f"/executions/{started['execution_id']}/events")["items"]
    assert len(events) > 6
    rows = page.locator("#timeline tr.ev")
    expect(rows).to_have_count(len(events))
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.sequence))") == list(range(len(events)))
    assert asked[:3] == ["0", "3", "6"], asked


def test_prefill_reads_an_input_the_list_left_out(server: Server, page: Page) -> None:
    given = {"slow": False, "items": ["mug"], "pack_seconds": 0.05, "note": "n" * 5000}
    started = server.api("POST", "/executions", {"workflow": "console_demo", "input": given}, 202)
    listed = server.api("GET", "/executions?workflow=console_demo&limit=1")["items"][0]
    assert listed["execution_id"] == started["execution_id"] and listed["omitted"][:1] == ["input"]
    page.goto(f"{server.base}/#/workflows/console_demo")
    page.locator("#start-prefill").click()
    expect(page.locator("#start-form textarea")).to_have_value(json.dumps(given, indent=2))
    settled(server, started["execution_id"])

"""The console's queues page (settings, waiting, running, oldest waiting) and an
execution's queue, priority and concurrency key (spec section 9)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server

pytestmark = pytest.mark.browser


def test_the_queues_page_and_the_execution_facts(console_server: Server, page: Page) -> None:
    server = console_server
    server.api("PUT", "/queues/console-parked", {"concurrency": 1, "rate": "60/m"})
    server.api("PUT", "/queues/console-slow", {"rate": "1/h"})  # one start an hour: the second waits
    given = {"slow": False, "items": ["mug"], "pack_seconds": 0.05}
    body = {"workflow": "console_demo", "input": given, "queue": "console-slow", "priority": 7, "concurrency_key": "acme"}
    server.api("POST", "/executions", body, 202)
    started = server.api("POST", "/executions", body, 202)
    page.goto(f"{server.base}/#/queues")
    row = page.locator("#queues tr[data-name='console-parked']")
    expect(row.locator(".concurrency")).to_have_text("1")
    expect(row.locator(".rate")).to_have_text("60/m")
    expect(row.locator(".per-key")).to_have_text("unlimited")
    expect(page.locator("#queues tr[data-name='console-slow'] .waiting")).to_have_text("1")  # refreshed every 2 s
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    expect(page.locator("#fact-queue")).to_contain_text("console-slow")
    expect(page.locator("#fact-priority")).to_contain_text("7")
    expect(page.locator("#fact-concurrency-key")).to_contain_text("acme")

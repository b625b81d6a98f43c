"""The console's schedules page: each schedule with its next fire time and its
recent executions; pause, resume and trigger from the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server

pytestmark = pytest.mark.browser


def test_the_schedules_page_lists_next_fires_and_recent_executions(console_server: Server, page: Page) -> None:
    server = console_server
    body = {"name": "console-nightly", "workflow": "console_demo", "cron": "0 3 * * *", "timezone": "Europe/Paris",
            "input": {"slow": False, "items": ["mug"], "pack_seconds": 0.01}}  # fmt: skip
    created = server.api("POST", "/schedules", body, 201)
    started = server.api("POST", "/schedules/console-nightly/trigger", None, 202)
    page.goto(f"{server.base}/#/schedules")
    row = page.locator('#schedules tr[data-name="console-nightly"]')
    expect(row).to_be_visible()
    expect(row.locator("td.next-fire time")).to_have_count(1)
    assert row.locator("td.next-fire time").get_attribute("datetime") == created["next_fire"]
    link = row.locator(f'a[href="#/executions/{started["execution_id"]}"]')
    expect(link).to_have_count(1)
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    assert server.api("GET", "/schedules/console-nightly")["state"] == "paused"
    expect(row.locator("td.next-fire")).to_have_text("—")
    row.get_by_role("button", name="Trigger now").click()
    expect(row.locator('[data-outcome="triggered"]')).to_have_count(2)
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    server.api("DELETE", "/schedules/console-nightly", None, 204)

"""The console against a server that requires bearer tokens (CEREBELUM_API_TOKENS)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import FLOW, Server, serve, shot

pytestmark = pytest.mark.browser

TOKEN = "console-test-token-6c1f"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("console-auth"), tokens=f"{TOKEN},another-token") as running:
        yield running


def raw_get(base: str, path: str) -> int:
    """GET with the path sent as written (httpx would resolve the `..` first)."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    connection = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_page_loads_without_a_token_and_the_api_needs_one(server: Server) -> None:
    page = httpx.get(f"{server.base}/")
    assert page.status_code == 200 and "console/js/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(f"{server.base}/console/js/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server.base}/console/js/app.js", headers={"If-None-Match": script.headers["etag"]}).status_code == 304
    assert httpx.get(f"{server.base}/api/v1/executions").status_code == 401
    assert raw_get(server.base, "/console/../pyproject.toml") == 401  # not a console file: behind auth
    assert raw_get(server.base, "/console/%2e%2e/pyproject.toml") == 401
    assert httpx.post(f"{server.base}/").status_code == 401  # only GET/HEAD reach the console


def test_the_token_form_stores_the_token_and_sends_it(server: Server, page: Page) -> None:
    server.api("POST", "/workflows", FLOW, expect=201)
    page.goto(server.base + "/")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This server needs a bearer token")
    shot(page, "token-form")

    page.fill("#token-dialog input[name=token]", "not-the-token")
    page.click("#token-save")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("refused")

    page.fill("#token-dialog input[name=token]", TOKEN)
    with page.expect_request(lambda r: r.url.endswith("/api/v1/workflows?limit=500")) as listed:
        page.click("#token-save")
    assert listed.value.headers["authorization"] == f"Bearer {TOKEN}"
    expect(dialog).to_be_hidden()
    expect(page.locator("#list-message")).to_contain_text("No executions yet")
    expect(page.locator("#token-button")).to_have_text("Token ✓")
    assert page.evaluate("localStorage.getItem('cerebelum.token')") == TOKEN

    # The token is kept across reloads and used for the live stream as well (fetch, not EventSource).
    page.reload()
    expect(page.locator("#list-message")).to_contain_text("No executions yet")
    expect(dialog).to_be_hidden()
    page.goto(f"{server.base}/#/workflows/console_demo")
    page.fill("#start-input", json.dumps({"slow": True, "items": ["x"]}))
    with page.expect_request(lambda r: r.url.endswith("/stream")) as streamed:
        page.click("#start-submit")
    assert streamed.value.headers["authorization"] == f"Bearer {TOKEN}"
    expect(page.locator('#graph .gnode[data-path="pack"]')).to_have_attribute("data-state", "completed", timeout=15_000)
    expect(page.locator("#execution-status .badge")).to_have_attribute("data-status", "completed")

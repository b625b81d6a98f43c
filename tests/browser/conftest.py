"""Fixtures of the browser tests: `cerebelum serve` in a subprocess, and the machine's
Debian Chromium driven headless by Playwright (never a downloaded browser).

Screenshots go to test-artifacts/console/ (git-ignored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.test_serve import CLI, free_port
from tests.helpers import wait_until_healthy

CHROMIUM = os.environ.get("CEREBELUM_CHROMIUM", "/usr/bin/chromium")
HERE = Path(__file__).parent
HANDLERS = HERE / "handlers.py"
FLOW = json.loads((HERE / "flow.json").read_text())
ARTIFACTS = HERE.parents[1] / "test-artifacts" / "console"
# The server's own settings come from the command line only.
SERVER_ENV_DROPPED = ("CEREBELUM_DB", "CEREBELUM_HANDLERS", "CEREBELUM_API_TOKENS", "CEREBELUM_API_TOKENS_FILE")


@dataclass
class Server:
    base: str
    db: Path
    token: str | None = None

    def api(self, method: str, path: str, body: Any = None, expect: int | None = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.request(method, f"{self.base}/api/v1{path}", json=body, headers=headers, timeout=10)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json() if response.content else None


@contextmanager
def serve(workdir: Path, tokens: str | None = None) -> Iterator[Server]:
    """`cerebelum serve` on a free loopback port with a SQLite database in `workdir`."""
    port = free_port()
    db = workdir / "console.db"
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROPPED}
    if tokens:
        env["CEREBELUM_API_TOKENS"] = tokens
    command = [CLI, "serve", "--port", str(port), "--workers", "2", "--handlers", str(HANDLERS), "--db", f"sqlite:///{db}"]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process)
        yield Server(base, db, tokens.split(",")[0] if tokens else None)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert f"console on {base}/" in err.decode(), "serve prints the console's URL"


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that need no auth, with flow.json stored as `console_demo`."""
    with serve(tmp_path_factory.mktemp("console")) as running:
        running.api("POST", "/workflows", FLOW, expect=201)
        yield running


@pytest.fixture(scope="package")  # not session: the sync API keeps an event loop running in this thread until it stops
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` installs Debian's (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def expected_401(text: str) -> bool:
    """The browser's own line for a request the token test expects to be refused."""
    return text.startswith("Failed to load resource") and "status of 401" in text


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A laptop-sized page; the test fails on any script error or any request off this machine."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    hosts: set[str] = set()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not expected_401(msg.text) else None)
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url.split(":")[0]))
    yield page
    context.close()
    assert not errors, errors
    assert hosts <= {"127.0.0.1", "data"}, f"requests left the server: {hosts}"


def shot(page: Page, name: str) -> Path:
    """Saves a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # sticky parts would otherwise be drawn where the page was scrolled to
    page.wait_for_timeout(300)  # let the colour transitions end
    page.screenshot(path=str(path), full_page=True)
    return path

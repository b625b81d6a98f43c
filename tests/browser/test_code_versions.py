"""The console and code versions (docs/deploys.md): a pinned execution of an old
code version shows as waiting for it, the server's workers leave it alone, and
after `executions upgrade` (run with the server's own handler file, so with its
code version) the timeline shows the change and the server finishes it."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Page, expect

import cerebelum
from tests.browser.conftest import HANDLERS, Server, shot
from tests.e2e.test_serve import CLI

pytestmark = pytest.mark.browser

PINNED = {
    "name": "console_pinned",
    "versioning": "pinned",
    "entrypoint": "gate",
    "nodes": {
        "gate": {"type": "function", "config": {"handler": "gate"}},
        "tell": {"type": "function", "config": {"handler": "send"}},
    },
    "edges": [{"from": "gate", "to": "tell"}],
}


def old_pinned_execution(server: Server) -> str:
    """Run `gate` as code version v-old in this process (it asks for a pause), then resume:
    running, no lease, pinned to v-old, `tell` still to run."""
    registry = cerebelum.HandlerRegistry()
    with cerebelum.Engine(f"sqlite:///{server.db}", handlers=registry, code_version="v-old", workers=0) as engine:

        def gate(ctx: cerebelum.StepContext) -> Any:
            engine.store.queue.request(ctx.execution_id, "pause")
            return {"gated": True}

        registry.register("gate", gate)
        registry.register("send", lambda ctx: {"sent": True})
        paused = engine.run(PINNED, {})
        assert paused.status == "paused", paused.error
        return engine.resume(paused.id).id


def test_a_pinned_execution_waits_for_its_code_version_until_upgraded(console_server: Server, page: Page) -> None:
    # Playwright's sync API runs an event loop in this thread, which the Engine's blocking calls refuse
    with ThreadPoolExecutor(1) as other:
        execution_id = other.submit(old_pinned_execution, console_server).result()
    page.goto(f"{console_server.base}/#/executions/{execution_id}")
    expect(page.locator("#waiting-code-version")).to_contain_text("Waiting for code version v-old")
    expect(page.locator("#fact-code-version")).to_contain_text("v-old (pinned)")
    shown = console_server.api("GET", f"/executions/{execution_id}")
    assert (shown["status"], shown["waiting_for_code_version"]) == ("running", "v-old")  # the server's workers left it

    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    moved = subprocess.run(
        [CLI, "--db", f"sqlite:///{console_server.db}", "executions", "upgrade", execution_id, "--handlers", str(HANDLERS)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    expect(page.locator("#execution-status .badge")).to_have_attribute("data-status", "completed", timeout=15_000)
    row = page.locator('#timeline tr.ev[data-type="code_version_changed"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("code version v-old →")
    expect(row).to_contain_text("(executions upgrade)")
    expect(page.locator("#waiting-code-version")).to_have_count(0)
    done = console_server.api("GET", f"/executions/{execution_id}")
    assert done["output"] == {"sent": True, "to": "ada"}  # the server's `send`: its code version took it over
    shot(page, "execution-code-version-upgraded")

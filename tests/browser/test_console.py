"""The web console in a real browser: start, watch, steer and inspect executions.

One `cerebelum serve` (SQLite, 2 in-process workers) serves these tests; the
workflow has a conditional, a durable delay, a map packing items one at a time,
and a parallel join (flow.json, handlers.py)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import FLOW, Server, shot

pytestmark = pytest.mark.browser

ITEMS = ["mug", "lamp", "desk", "chair"]


@pytest.fixture
def server(console_server: Server) -> Server:
    return console_server


def node(page: Page, path: str) -> Locator:
    return page.locator(f'#graph .gnode[data-path="{path}"]')


def cell(page: Page, path: str) -> Locator:
    return page.locator(f'#graph .cell[data-path="{path}"]')


def status_badge(page: Page) -> Locator:
    return page.locator("#execution-status .badge")


def wait_for_status(server: Server, execution_id: str, wanted: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        execution = server.api("GET", f"/executions/{execution_id}")
        if execution["status"] == wanted:
            return dict(execution)
        assert execution["status"] not in ("completed", "failed"), execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.1)


def test_start_watch_pause_resume_and_travel_in_time(server: Server, page: Page) -> None:
    # The workflow page draws the definition and validates the input before sending it.
    page.goto(f"{server.base}/#/workflows/console_demo")
    expect(page.locator("#workflow-name")).to_have_text("console_demo")
    for path in ("prepare", "route", "wait", "pack", "pack[*]", "notify", "notify.email", "notify.sms"):
        expect(node(page, path)).to_be_visible()
    expect(page.locator("#graph .edge-label text")).to_have_text(["input.slow", "otherwise"])
    page.fill("#start-input", '{"items": ["mug",')
    expect(page.locator("#start-check")).to_contain_text("Not valid JSON")
    expect(page.locator("#start-submit")).to_be_disabled()
    page.fill("#start-input", json.dumps({"slow": True, "items": ITEMS}))
    expect(page.locator("#start-check")).to_have_text("Valid JSON.")
    shot(page, "workflow")
    page.click("#start-submit")

    # The execution page follows the run live, over the SSE stream.
    page.wait_for_url(re.compile(r"#/executions/exec-"))
    execution_id = page.url.split("#/executions/")[1]
    expect(node(page, "wait")).to_have_attribute("data-state", "timer")
    expect(node(page, "wait").locator(".status")).to_contain_text("timer fires")
    expect(node(page, "prepare")).to_have_attribute("data-state", "completed")
    expect(node(page, "pack")).to_have_attribute("data-state", "pending")
    expect(page.locator('#graph .edge[data-from="route"][data-to="wait"]')).to_have_class(re.compile(r"\btaken\b"))
    expect(page.locator('#graph .edge[data-from="route"][data-to="pack"]')).not_to_have_class(re.compile(r"\btaken\b"))
    expect(page.locator("#live-status")).to_have_text("● live")
    shot(page, "execution-timer")

    expect(node(page, "pack")).to_have_attribute("data-state", "running")
    expect(page.locator("#graph .cell")).to_have_count(len(ITEMS))
    expect(cell(page, "pack[0]")).to_have_attribute("data-state", "running")
    expect(cell(page, "pack[0]")).to_have_attribute("data-state", "completed")
    expect(node(page, "pack").locator(".status").first).to_contain_text(f"1/{len(ITEMS)} items done")

    # Pause from the button: the item in flight may finish, no new one starts.
    page.click("#btn-pause")
    expect(status_badge(page)).to_have_attribute("data-status", "paused")
    expect(page.locator("#btn-resume")).to_be_enabled()
    expect(page.locator("#btn-pause")).to_be_disabled()
    expect(page.locator('#timeline tr.ev[data-type="execution_paused"]')).to_have_count(1)
    wait_for_status(server, execution_id, "paused")
    time.sleep(1.0)  # let an item in flight finish
    done = page.locator('#graph .cell[data-state="completed"]').count()
    time.sleep(1.2)
    assert page.locator('#graph .cell[data-state="completed"]').count() == done < len(ITEMS)
    # An item whose start was committed together with the pause request waits, started, for the resume.
    states = page.locator("#graph .cell").evaluate_all("cs => cs.map(c => c.dataset.state)")
    waiting = [state for state in states if state not in ("completed", "pending")]
    assert len(waiting) <= 1 and set(waiting) <= {"running", "paused"}, states
    assert states.count("pending") == len(ITEMS) - done - len(waiting)
    expect(node(page, "notify")).to_have_attribute("data-state", "pending")
    expect(node(page, "pack")).to_have_attribute("data-state", "paused")
    shot(page, "execution-paused")

    page.click("#btn-resume")
    expect(status_badge(page)).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(page.locator('#graph .cell[data-state="completed"]')).to_have_count(len(ITEMS))
    for path in ("pack", "notify", "notify.email", "notify.sms"):
        expect(node(page, path)).to_have_attribute("data-state", "completed")
    expect(page.locator("#live-status")).to_have_text("finished")
    seed = server.api("GET", f"/executions/{execution_id}")["seed"]  # 63 bits: beyond a JS number's exact range
    expect(page.locator("#facts")).to_contain_text(f"Seed{seed}")
    page.click('.tab[data-tab="output"]')
    expect(page.locator("#side")).to_contain_text("sent")
    shot(page, "execution-completed")

    # The timeline: every event of the log, in order, with a readable line.
    events = server.api("GET", f"/executions/{execution_id}/events")["items"]
    rows = page.locator("#timeline tr.ev")
    expect(rows).to_have_count(len(events))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.type)") == [e["type"] for e in events]
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.sequence))") == list(range(len(events)))
    assert [e["type"] for e in events].count("execution_resumed") == 1
    expect(page.locator('#timeline tr.ev[data-type="edge_taken"]').first).to_contain_text("prepare → route")

    page.select_option("#timeline-node", "pack")
    of_pack = [e for e in events if (e["node_id"] or "").startswith("pack")]
    expect(page.locator("#timeline tr.ev:visible")).to_have_count(len(of_pack))
    assert set(page.locator("#timeline tr.ev:visible td.node-cell").all_inner_texts()) == {e["node_id"] for e in of_pack}
    page.select_option("#timeline-node", "")
    expect(page.locator("#timeline tr.ev:visible")).to_have_count(len(events))

    # Time travel: a timeline row shows the execution as it was after that event (GET /state?at=N).
    timer_at = next(e["sequence"] for e in events if e["type"] == "timer_started")
    page.click(f'#timeline tr.ev[data-sequence="{timer_at}"]')
    expect(page.locator("#travel-note")).to_contain_text(f"after event {timer_at}")
    expect(node(page, "wait")).to_have_attribute("data-state", "timer")
    expect(node(page, "pack")).to_have_attribute("data-state", "pending")
    expect(node(page, "notify")).to_have_attribute("data-state", "pending")
    expect(page.locator("#timeline tr.payload")).to_contain_text("fires_at")
    state = server.api("GET", f"/executions/{execution_id}/state?at={timer_at}")
    assert state["position"]["current"] == "wait"
    expect(page.locator("#state-kv")).to_contain_text(f"After event{timer_at}")
    expect(page.locator("#state-kv")).to_contain_text("Current nodewait")
    shot(page, "time-travel")

    # The slider: right after the first item was packed.
    first_done = next(e["sequence"] for e in events if e["type"] == "node_completed" and e["node_id"] == "pack[0]")
    page.locator("#travel-slider").fill(str(first_done))
    expect(page.locator("#travel-note")).to_contain_text(f"after event {first_done}")
    expect(cell(page, "pack[0]")).to_have_attribute("data-state", "completed")
    expect(cell(page, f"pack[{len(ITEMS) - 1}]")).to_have_attribute("data-state", "pending")
    expect(node(page, "wait")).to_have_attribute("data-state", "completed")
    page.click("#travel-live")
    expect(page.locator("#travel-note")).to_be_hidden()
    expect(node(page, "notify")).to_have_attribute("data-state", "completed")

    # A map item's details: click its cell.
    cell(page, "pack[2]").click()
    expect(page.locator("#node-path")).to_have_text("pack[2]")
    expect(page.locator("#side")).to_contain_text("desk")

    # Dark theme, from the toggle (auto -> light -> dark).
    page.click("#theme")
    page.click("#theme")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.wait_for_timeout(400)  # the colour transitions
    shot(page, "execution-dark")


def test_list_filters_replay_cancel_and_versions(server: Server, page: Page) -> None:
    fast_input = {"slow": False, "items": ["a"], "pack_seconds": 0}
    fast = server.api("POST", "/executions", {"workflow": "console_demo", "input": fast_input}, 202)
    wait_for_status(server, fast["execution_id"], "completed")
    slow_input = {"slow": False, "items": ITEMS, "pack_seconds": 4}  # the first item is in flight for 4 s
    slow = server.api("POST", "/executions", {"workflow": "console_demo", "input": slow_input}, 202)

    # The list: live, filtered by status, searched by id.
    page.goto(server.base + "/")
    rows = page.locator("#executions tbody tr")
    expect(page.locator(f'#executions tr[data-id="{fast["execution_id"]}"]')).to_have_attribute("data-status", "completed")
    expect(page.locator(f'#executions tr[data-id="{slow["execution_id"]}"]')).to_have_attribute("data-status", "running")
    page.click('.chip[data-status="completed"]')
    expect(rows.first).to_have_attribute("data-status", "completed")
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"completed"}
    page.click('.chip[data-status="paused"]')
    expect(page.locator("#list-message")).to_contain_text("No execution matches")
    page.click('.chip[data-status="all"]')
    page.fill("#filter-id", slow["execution_id"][5:20])
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", slow["execution_id"])
    shot(page, "executions-list")
    page.press("#filter-id", "Enter")

    # Cancel, with a confirmation.
    page.wait_for_url(re.compile(slow["execution_id"]))
    expect(cell(page, "pack[0]")).to_have_attribute("data-state", "running")
    page.click("#btn-cancel")
    expect(page.locator("#confirm-cancel")).to_be_visible()
    expect(status_badge(page)).to_have_attribute("data-status", "running")  # not before it is confirmed
    page.click("#btn-cancel-confirm")
    expect(status_badge(page)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#execution-error")).to_contain_text("the execution was cancelled")
    expect(node(page, "pack")).to_have_attribute("data-state", "cancelled")
    expect(cell(page, "pack[0]")).to_have_attribute("data-state", "cancelled")
    expect(node(page, "wait")).to_have_attribute("data-state", "not-run")
    expect(node(page, "notify")).to_have_attribute("data-state", "not-run")
    expect(page.locator("#btn-cancel")).to_be_disabled()

    # Replay: identical, then (with the recorded route edited in the log) the first divergence.
    page.goto(f"{server.base}/#/executions/{fast['execution_id']}")
    page.click("#btn-replay")
    expect(page.locator("#replay-verdict")).to_have_attribute("data-identical", "true")
    expect(page.locator("#replay-verdict")).to_contain_text("Replay identical")
    events = server.api("GET", f"/executions/{fast['execution_id']}/events")["items"]
    routed = next(e for e in events if e["type"] == "edge_taken" and e["node_id"] == "route")
    with sqlite3.connect(server.db, timeout=30) as db:
        payload = {**routed["payload"], "to": "wait", "edge": 1}
        db.execute(
            "UPDATE events SET payload = ? WHERE execution_id = ? AND sequence = ?",
            (json.dumps(payload), fast["execution_id"], routed["sequence"]),
        )
    page.click("#btn-replay")
    verdict = page.locator("#replay-verdict")
    expect(verdict).to_have_attribute("data-identical", "false")
    expect(verdict).to_contain_text(f"diverges at event {routed['sequence']} (node route)")
    expect(verdict).to_contain_text("Recorded in the log")
    expect(verdict).to_contain_text("What the replay did")
    expect(page.locator("#travel-note")).to_contain_text(f"after event {routed['sequence']}")
    shot(page, "replay-divergence")

    # Versions: a changed definition is v2; the two side by side.
    changed = json.loads(json.dumps(FLOW))
    changed["nodes"]["pack"]["config"]["max_concurrency"] = 2
    server.api("POST", "/workflows", changed, expect=201)
    page.goto(f"{server.base}/#/workflows/console_demo")
    expect(page.locator("#diff")).to_contain_text("changed line")
    expect(page.locator("#diff td.code.del")).to_contain_text(['"max_concurrency": 1'])
    expect(page.locator("#diff td.code.add")).to_contain_text(['"max_concurrency": 2'])
    shot(page, "workflow-versions")


def test_a_dropped_stream_resumes_after_the_last_event_id(server: Server, page: Page) -> None:
    """The first stream connection is cut after three events; the console reconnects with
    Last-Event-ID and ends with every event exactly once."""
    given = {"slow": False, "items": ITEMS[:3], "pack_seconds": 0.6}
    started = server.api("POST", "/executions", {"workflow": "console_demo", "input": given}, 202)
    calls: list[dict[str, str]] = []

    def cut_first_stream(route: Route) -> None:
        calls.append(route.request.headers)
        if len(calls) > 1:
            route.continue_()
            return
        full = route.fetch()  # the whole stream: it ends with the execution
        messages = full.text().split("\n\n")
        route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body="\n\n".join(messages[:3]) + "\n\n")

    page.route("**/stream", cut_first_stream)
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    expect(status_badge(page)).to_have_attribute("data-status", "completed", timeout=15_000)
    events = server.api("GET", f"/executions/{started['execution_id']}/events")["items"]
    rows = page.locator("#timeline tr.ev")
    expect(rows).to_have_count(len(events))
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.sequence))") == list(range(len(events)))
    assert len(calls) == 2, calls
    first_after = int(calls[0].get("last-event-id", "-1"))
    assert calls[1]["last-event-id"] == str(first_after + 3)
    expect(page.locator('#graph .cell[data-state="completed"]')).to_have_count(3)


FAILING = {
    "name": "console_fail",
    "entrypoint": "fetch",
    "nodes": {
        "fetch": {"type": "function", "config": {"handler": "flaky", "retry": {"max_attempts": 3, "initial_interval_s": 0.7}}},
        "charge": {"type": "function", "config": {"handler": "boom"}},
        "ship": {"type": "function", "config": {"handler": "send"}},
    },
    "edges": [{"from": "fetch", "to": "charge"}, {"from": "charge", "to": "ship"}],
}


def test_retries_and_a_failure_read_plainly(server: Server, page: Page) -> None:
    server.api("POST", "/workflows", FAILING, expect=201)
    page.goto(f"{server.base}/#/executions?workflow=console_fail")
    expect(page.locator("#list-message")).to_contain_text("No execution matches")
    started = server.api("POST", "/executions", {"workflow": "console_fail", "input": {}}, 202)
    row = page.locator(f'#executions tr[data-id="{started["execution_id"]}"]')
    expect(row).to_have_attribute("data-status", "running")  # the list refreshes by itself
    expect(row).to_have_attribute("data-status", "failed", timeout=10_000)
    row.locator("a").first.click()

    expect(status_badge(page)).to_have_attribute("data-status", "failed")
    expect(page.locator("#execution-error")).to_contain_text("ValueError: card declined")
    # the handler's traceback, folded under the error; its summary names the last frame
    folded = page.locator("#execution-traceback")
    expect(folded.locator("summary")).to_contain_text("handlers.py")
    expect(folded.locator("pre")).not_to_be_visible()
    folded.locator("summary").click()
    expect(folded.locator("pre")).to_be_visible()
    expect(folded.locator("pre")).to_contain_text('raise ValueError("card declined")')
    expect(node(page, "fetch")).to_have_attribute("data-state", "completed")
    expect(node(page, "charge")).to_have_attribute("data-state", "failed")
    expect(node(page, "charge").locator(".status")).to_have_text("ValueError: card declined")
    expect(node(page, "ship")).to_have_attribute("data-state", "not-run")
    node(page, "fetch").click()
    expect(page.locator("#side")).to_contain_text("Attempt 1 failed")
    expect(page.locator("#side")).to_contain_text("Attempt 2 failed")

    # Just after the first failed attempt, the node was waiting to retry.
    events = server.api("GET", f"/executions/{started['execution_id']}/events")["items"]
    first_failure = next(e["sequence"] for e in events if e["type"] == "attempt_failed")
    page.click(f'#timeline tr.ev[data-sequence="{first_failure}"]')
    expect(node(page, "fetch")).to_have_attribute("data-state", "retrying")
    expect(node(page, "fetch").locator(".status")).to_contain_text("retry 2 at")
    expect(page.locator(f'#timeline tr.ev[data-sequence="{first_failure}"]')).to_contain_text("retry at")
    expect(page.locator("#timeline-traceback summary")).to_contain_text("Traceback")
    shot(page, "execution-failed")


def test_error_edges_are_drawn_apart_and_the_one_taken_is_shown(server: Server, page: Page) -> None:
    saga = {
        "name": "console_saga",
        "entrypoint": "charge",
        "nodes": {
            "charge": {"type": "function", "config": {"handler": "boom"}},
            "ship": {"type": "function", "config": {"handler": "send"}},
            "refund": {"type": "function", "config": {"handler": "send"}},
        },
        "edges": [
            {"from": "charge", "to": "ship"},
            {"from": "charge", "to": "refund", "on": "error", "when": "error.kind == 'handler_error'"},
        ],
    }
    server.api("POST", "/workflows", saga, expect=201)
    started = server.api("POST", "/executions", {"workflow": "console_saga", "input": {}}, expect=202)
    wait_for_status(server, started["execution_id"], "completed")
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    error_edge = page.locator('#graph path.edge[data-edge="1"]')
    expect(error_edge).to_have_class(re.compile(r"\bon-error\b.*\btaken\b|\btaken\b.*\bon-error\b"))
    expect(page.locator('#graph path.edge[data-edge="0"]')).not_to_have_class(re.compile(r"\btaken\b"))
    expect(page.locator("#graph .edge-label text")).to_have_count(1)
    expect(page.locator("#graph .edge-label text")).to_contain_text("on error: error.kind")  # long labels are cut
    expect(node(page, "charge")).to_have_attribute("data-state", "failed")
    expect(node(page, "refund")).to_have_attribute("data-state", "completed")
    expect(page.locator("#timeline")).to_contain_text("charge → refund on error (handler_error)")
    shot(page, "error-edge-taken")


def test_a_waiting_execution_is_approved_in_the_browser_and_a_failure_is_forked(server: Server, page: Page) -> None:
    approval = {
        "name": "console_approval",
        "entrypoint": "approve",
        "nodes": {
            "approve": {"type": "wait", "config": {"signal": "approve"}},
            "ship": {"type": "function", "config": {"handler": "send"}},
            "charge": {"type": "function", "config": {"handler": "boom"}},
        },
        "edges": [
            {"from": "approve", "to": "ship", "when": "data.ok"},
            {"from": "approve", "to": "charge"},
        ],
    }
    server.api("POST", "/workflows", approval, expect=201)
    started = server.api("POST", "/executions", {"workflow": "console_approval", "input": {}}, expect=202)
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    expect(node(page, "approve")).to_have_attribute("data-state", "waiting")
    expect(node(page, "approve").locator(".status")).to_have_text("signal approve?")
    box = page.locator('#signal-forms .signal-box[data-signal="approve"]')
    expect(box).to_contain_text("Waiting for signal approve")
    box.locator("textarea").fill("{not json")
    box.locator("button").click()
    expect(box).to_contain_text("not JSON")
    box.locator("textarea").fill('{"ok": false}')
    box.locator("button").click()
    expect(status_badge(page)).to_have_attribute("data-status", "failed", timeout=10_000)  # rejected: it went to charge
    expect(page.locator("#signal-forms .signal-box")).to_have_count(0)
    expect(page.locator("#timeline")).to_contain_text('signal approve: {"ok":false}')
    shot(page, "signal-sent")

    retry = page.locator("#btn-retry")
    expect(retry).to_be_visible()
    retry.click()
    expect(page.locator("#execution-id")).not_to_have_text(started["execution_id"], timeout=10_000)
    forked_id = page.locator("#execution-id").inner_text()
    forked = server.api("GET", f"/executions/{forked_id}")
    assert forked["forked_from"]["execution_id"] == started["execution_id"]
    expect(status_badge(page)).to_have_attribute("data-status", "failed", timeout=10_000)  # same broken handler
    events = server.api("GET", f"/executions/{forked_id}/events")["items"]
    assert any(e["type"] == "signal_received" for e in events)  # the approval was kept, not asked for again

    page.click('#timeline tr.ev[data-sequence="1"]')
    page.locator("#btn-fork-here").click()
    expect(page.locator("#execution-id")).not_to_have_text(forked_id, timeout=10_000)
    again = server.api("GET", f"/executions/{page.locator('#execution-id').inner_text()}")
    assert again["forked_from"]["execution_id"] == forked_id and again["forked_from"]["sequence"] <= 1


def test_a_parent_links_to_its_child_and_back(server: Server, page: Page) -> None:
    server.api("POST", "/workflows", {"name": "console_child", "entrypoint": "s",
               "nodes": {"s": {"type": "function", "config": {"handler": "send"}}}}, expect=201)
    server.api("POST", "/workflows", {"name": "console_parent", "entrypoint": "kid",
               "nodes": {"kid": {"type": "workflow", "config": {"workflow": "console_child"}}}}, expect=201)
    started = server.api("POST", "/executions", {"workflow": "console_parent", "input": {}}, expect=202)
    wait_for_status(server, started["execution_id"], "completed")
    page.goto(f"{server.base}/#/executions/{started['execution_id']}")
    expect(page.locator("#children a")).to_have_count(1)
    expect(page.locator("#children")).to_contain_text("kid")
    node(page, "kid").click()
    expect(page.locator("#side .child-link")).to_be_visible()
    page.locator("#side .child-link").click()
    expect(page.locator("#execution-id")).not_to_have_text(started["execution_id"])
    expect(page.locator("#parent-link")).to_contain_text(started["execution_id"])
    expect(status_badge(page)).to_have_attribute("data-status", "completed")
    page.locator("#parent-link a").click()
    expect(page.locator("#execution-id")).to_have_text(started["execution_id"])
    shot(page, "parent-and-child")

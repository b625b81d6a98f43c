"""Bounded reads: the event log in pages, list items without large bodies.

Against a real `cerebelum serve` on SQLite and on PostgreSQL (with a password
in its URL, which must never show)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from cerebelum.domain.events import Event
from cerebelum.entrypoints.http.pages import event_page, larger_than, summary
from tests.hostile import test_http_server as common
from tests.hostile.test_http_server import Running, serve

db_url = common.db_url

HANDLERS = """
import cerebelum


@cerebelum.handler("one")
async def one(ctx):
    return 1


@cerebelum.handler("echo")
async def echo(ctx):
    return ctx.input.get("back")
"""
ITEMS = 600  # about two events each: a log of more than one default page (1,000)
BIG = {
    "name": "big_log",
    "entrypoint": "m",
    "nodes": {"m": {"type": "map", "config": {"items": "input.xs", "max_concurrency": 0, "node": {"type": "function", "config": {"handler": "one"}}}}},  # noqa: E501
}
ECHO = {"name": "echo", "entrypoint": "e", "nodes": {"e": {"type": "function", "config": {"handler": "echo"}}}}
API = "/api/v1"


def finished(server: Running, execution_id: str, timeout: float = 40) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, object] = server.request("GET", f"{API}/executions/{execution_id}").json()
        if body["status"] in ("completed", "failed"):
            assert body["status"] == "completed", body
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_the_event_log_comes_in_pages_and_lists_leave_out_large_bodies(tmp_path: Path, db_url: str) -> None:
    with serve(tmp_path, db_url, "--workers", "2", handlers=HANDLERS) as server:
        for flow in (BIG, ECHO):
            assert server.request("POST", f"{API}/workflows", json=flow).status_code == 201
        big = server.request("POST", f"{API}/executions", json={"workflow": "big_log", "input": {"xs": list(range(ITEMS))}})
        small = server.request("POST", f"{API}/executions", json={"workflow": "echo", "input": {"back": "hi"}})
        large = server.request("POST", f"{API}/executions", json={"workflow": "echo", "input": {"back": "x" * 5000}})
        big_id, small_id, large_id = (answer.json()["execution_id"] for answer in (big, small, large))
        total = int(finished(server, big_id)["last_sequence"]) + 1  # type: ignore[call-overload]
        assert total > 1000
        for execution_id in (small_id, large_id):
            finished(server, execution_id)

        # the default page: 1,000 events and where to go on; following next_from gives the whole log once
        events = f"{API}/executions/{big_id}/events"
        first = server.request("GET", events).json()
        assert len(first["items"]) == 1000 and first["next_from"] == 1000
        seen = [e["sequence"] for e in first["items"]]
        next_from = first["next_from"]
        while next_from is not None:
            page = server.request("GET", events, params={"from": next_from, "limit": 250}).json()
            assert 0 < len(page["items"]) <= 250
            seen += [e["sequence"] for e in page["items"]]
            next_from = page["next_from"]
        assert seen == list(range(total))
        # ranges: `to` is inclusive and ends the pages
        page = server.request("GET", events, params={"from": 3, "limit": 7}).json()
        assert [e["sequence"] for e in page["items"]] == list(range(3, 10)) and page["next_from"] == 10
        page = server.request("GET", events, params={"from": 3, "to": 5, "limit": 3}).json()
        assert [e["sequence"] for e in page["items"]] == [3, 4, 5] and page["next_from"] is None
        page = server.request("GET", events, params={"from": 3, "to": 6, "limit": 3}).json()
        assert [e["sequence"] for e in page["items"]] == [3, 4, 5] and page["next_from"] == 6
        last = server.request("GET", events, params={"from": total - 1}).json()
        assert [e["sequence"] for e in last["items"]] == [total - 1] and last["next_from"] is None
        assert len(server.request("GET", events, params={"limit": 10_000}).json()["items"]) == total
        for limit in (0, 10_001, -1):
            refused = server.request("GET", events, params={"limit": limit})
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"

        # lists: summaries without bodies over 4 KB; the execution's own route has everything
        listed = {item["execution_id"]: item for item in server.request("GET", f"{API}/executions").json()["items"]}
        assert listed[small_id]["input"] == {"back": "hi"} and listed[small_id]["output"] == "hi"
        assert listed[small_id]["omitted"] == []
        assert listed[large_id]["omitted"] == ["input", "output"]
        assert listed[large_id]["input"] is None and listed[large_id]["output"] is None
        assert listed[big_id]["omitted"] == []  # 600 small items: about 2.4 KB of input
        full = server.request("GET", f"{API}/executions/{large_id}").json()
        assert full["input"] == {"back": "x" * 5000} and full["output"] == "x" * 5000 and "omitted" not in full


def test_a_page_stops_early_past_its_byte_budget() -> None:
    moment = datetime.now(UTC)
    log = [Event(str(n), "x", n, "node_completed", "a", {"output": "y" * 1000}, moment) for n in range(10)]

    page = json.loads(event_page(log, 5, 3600))  # three events of ~1,180 bytes fit, a fourth does not
    assert [e["sequence"] for e in page["items"]] == [0, 1, 2] and page["next_from"] == 3
    assert json.loads(event_page(log[:1], 5, 10))["items"][0]["sequence"] == 0  # always at least one event
    lone = [Event("0", "x", 0, "node_completed", "a", {"output": "\ud800"}, moment)]
    assert json.loads(event_page(lone, 5, 1000))["items"][0]["payload"] == {"output": "\ud800"}


def test_the_size_check_stops_early_and_counts_roughly() -> None:
    assert not larger_than({"a": [1, 2, "xyz"], "b": None}, 100)
    assert larger_than("x" * 5000, 4096) and not larger_than("x" * 4000, 4096)
    assert larger_than([[0] * 3000] * 3000, 4096)  # nine million items: answered after a few thousand steps
    assert larger_than({str(n): n for n in range(2000)}, 4096)
    assert larger_than(10**20000, 4096) and not larger_than(True, 4)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert larger_than(deep, 4096)  # no recursion
    item = summary({"execution_id": "e", "input": "x" * 5000, "output": 1}, 4096)
    assert item["input"] is None and item["output"] == 1 and item["omitted"] == ["input"]

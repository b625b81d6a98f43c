"""Resources under hostile input: stuck sync handlers, metric cardinality, and
many concurrent creates of one workflow name.

Each has a bounded deadline: a missing limit fails here instead of hanging."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import cerebelum
from cerebelum.application.handoff import Threads, call_in, in_thread
from cerebelum.domain.events import Event, EventType
from cerebelum.entrypoints.http import create_app
from cerebelum.entrypoints.http.metrics import Metrics
from tests.hostile import test_http_server as common
from tests.hostile.test_http_server import serve

db_url = common.db_url  # the fixture: SQLite, and PostgreSQL with a password in its URL

STUCK_HANDLERS = """
import threading
import cerebelum

_never = threading.Event()


@cerebelum.handler("stuck")
def stuck(ctx):
    _never.wait(120)  # a sync handler that ignores its time-out
    return 1


@cerebelum.handler("quick")
def quick(ctx):
    return {"ok": True}
"""
STUCK = {"name": "stuck", "entrypoint": "s", "nodes": {"s": {"type": "function", "config": {"handler": "stuck", "timeout_s": 0.2}}}}  # noqa: E501
QUICK = {"name": "quick", "entrypoint": "q", "nodes": {"q": {"type": "function", "config": {"handler": "quick"}}}}
STEP_POOL = 32  # the engine's pool of threads for sync handlers


def settle(server_request: object, api: str, ids: list[str], deadline: float) -> list[dict[str, object]]:
    done: list[dict[str, object]] = []
    for execution_id in ids:
        while True:
            body = server_request("GET", f"{api}/executions/{execution_id}").json()  # type: ignore[operator]
            if body["status"] in ("completed", "failed"):
                done.append(body)
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
    return done


def test_timed_out_sync_handlers_do_not_starve_other_executions(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'stuck.db'}"
    with serve(tmp_path, db, "--workers", "16", handlers=STUCK_HANDLERS) as server:
        for flow in (STUCK, QUICK):
            assert server.request("POST", "/api/v1/workflows", json=flow).status_code == 201
        api = "/api/v1"
        started = [server.request("POST", f"{api}/executions", json={"workflow": "stuck"}) for _ in range(40)]
        stuck = [answer.json()["execution_id"] for answer in started]
        for body in settle(server.request, api, stuck, time.monotonic() + 40):
            assert body["status"] == "failed" and body["error"]["kind"] == "timeout", body  # type: ignore[index]
        # more stuck threads than the pool has places: an unrelated execution still runs
        quick = server.request("POST", f"{api}/executions", json={"workflow": "quick"}).json()["execution_id"]
        [body] = settle(server.request, api, [quick], time.monotonic() + 15)
        assert body["status"] == "completed" and body["output"] == {"ok": True}, body
        metrics = server.request("GET", "/metrics").text
        abandoned = int(re.search(r'^cerebelum_threads_abandoned\{pool="cerebelum-step"\} (\d+)$', metrics, re.M).group(1))  # type: ignore[union-attr]
        cap = int(re.search(r'^cerebelum_threads_abandoned_max\{pool="cerebelum-step"\} (\d+)$', metrics, re.M).group(1))  # type: ignore[union-attr]
        assert abandoned >= STEP_POOL and cap >= abandoned, metrics


def test_the_pool_replaces_abandoned_threads_within_its_cap() -> None:
    pool = Threads(2, "capped", max_abandoned=1)
    release = threading.Event()

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call_in(pool, release.wait, 30), 0.1)
        # the first thread was replaced, the cap kept the next two in the pool: it is now full of stuck calls
        assert (pool.abandoned, pool.abandoned_total) == (1, 1)
        quick = in_thread(pool, lambda: "quick")
        release.set()  # the stuck calls return: the pool's own threads take the quick call; the replaced one ends
        assert await asyncio.wait_for(quick, 10) == "quick"
        deadline = time.monotonic() + 10
        while pool.abandoned:
            assert time.monotonic() < deadline, "the abandoned thread did not end once its call returned"
            await asyncio.sleep(0.01)

    asyncio.run(main())
    pool.shutdown()


def test_a_pool_of_one_keeps_running_calls_after_many_time_outs() -> None:
    pool = Threads(1, "one")  # the default cap: 4 abandoned threads per place
    release = threading.Event()

    async def main() -> None:
        for _ in range(4):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call_in(pool, release.wait, 30), 0.05)
        assert await asyncio.wait_for(in_thread(pool, lambda: 42), 10) == 42
        assert pool.abandoned == 4 == pool.max_abandoned

    asyncio.run(main())
    release.set()
    pool.shutdown()


def _event(execution_id: str, sequence: int, kind: str, payload: dict[str, object]) -> Event:
    return Event(f"{execution_id}-{sequence}", execution_id, sequence, kind, None, payload, datetime.now(UTC))


def test_metrics_keep_at_most_100_workflow_series() -> None:
    with cerebelum.Engine("memory://", workers=0) as engine:
        metrics = Metrics(engine)
        for index in range(2000):
            execution_id = f"exec-{index}"
            metrics.observe(_event(execution_id, 0, EventType.EXECUTION_STARTED, {"workflow": f"wf-{index:04d}"}))
            metrics.observe(_event(execution_id, 1, EventType.EXECUTION_COMPLETED, {}))
        text = asyncio.run(metrics.render())
        started = dict(re.findall(r'^cerebelum_executions_started_total\{workflow="([^"]+)"\} (\d+)$', text, re.M))
        assert len(started) == 101 and started["other"] == "1900" and started["wf-0000"] == "1", sorted(started)[:5]
        completed = dict(re.findall(r'^cerebelum_executions_completed_total\{workflow="([^"]+)"\} (\d+)$', text, re.M))
        assert completed.keys() == started.keys() and completed["other"] == "1900"
        assert len(text.encode()) < 64_000, len(text.encode())
        # the app's own scrape (and its cap setting)
        client = TestClient(create_app(engine, metrics_max_workflows=3))
        assert client.get("/metrics").status_code == 200


def test_fifty_concurrent_creates_of_one_name_all_get_a_version(tmp_path: Path, db_url: str) -> None:
    with serve(tmp_path, db_url, "--workers", "0") as server:

        def create(index: int) -> httpx.Response:
            flow = {"name": "raced", "entrypoint": "d", "nodes": {"d": {"type": "delay", "config": {"seconds": index}}}}
            return server.request("POST", "/api/v1/workflows", json=flow)

        with ThreadPoolExecutor(50) as threads:
            answers = list(threads.map(create, range(50)))
        assert [a.status_code for a in answers] == [201] * 50, [a.text for a in answers if a.status_code != 201][:3]
        assert sorted(a.json()["version"] for a in answers) == list(range(1, 51))

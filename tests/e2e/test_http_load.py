"""A bounded load test of `cerebelum serve` on loopback (SQLite, an in-process pool of 4).

50 concurrent clients start EXECUTIONS executions of a 1-step no-op workflow
over POST /api/v1/executions, then the list route is polled (paginated) until
every one is terminal. Checked: every POST answered 202 with a distinct id,
every id is listed exactly once and completed (none lost, none duplicated),
and a sample of the logs (GET /events) has contiguous sequences from 0 and
exactly one execution_completed. Only 127.0.0.1 traffic.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_serve import CLI, free_port
from tests.helpers import wait_until_healthy

EXECUTIONS = 2_000
CLIENTS = 50
SAMPLE = 100
SETTLE_TIMEOUT = 240.0
HANDLERS = """
import cerebelum

@cerebelum.handler("noop")
def noop(ctx):
    return {"ok": True}
"""
FLOW = {"name": "load", "entrypoint": "only", "nodes": {"only": {"type": "function", "config": {"handler": "noop"}}}}
API = "/api/v1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "h.py").write_text(HANDLERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [CLI, "serve", "--port", str(port), "--workers", "4", "--handlers", "h.py"]
    command += ["--db", f"sqlite:///{tmp_path / 'load.db'}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_healthy(base, process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()[-2000:]


async def _listed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every execution of the workflow, through the list route's pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"workflow": FLOW["name"], "limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(f"{API}/executions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_2000_executions_from_50_clients_all_complete_once(server: str) -> None:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as client:
        created = await client.post(f"{API}/workflows", json=FLOW)
        assert created.status_code == 201, created.text

        gate = asyncio.Semaphore(CLIENTS)

        async def start(n: int) -> str:
            async with gate:
                response = await client.post(f"{API}/executions", json={"workflow": "load", "input": {"n": n}})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["input"] == {"n": n}
            return str(body["execution_id"])

        began = time.monotonic()
        ids = await asyncio.gather(*(start(n) for n in range(EXECUTIONS)))
        enqueued = time.monotonic() - began
        assert len(set(ids)) == EXECUTIONS, "duplicate execution ids"

        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            listed = await _listed(client)
            statuses = {item["execution_id"]: item["status"] for item in listed}
            done = sum(status in ("completed", "failed") for status in statuses.values())
            if done == EXECUTIONS:
                break
            assert time.monotonic() < deadline, f"{done}/{EXECUTIONS} terminal after {SETTLE_TIMEOUT}s"
            await asyncio.sleep(1.0)
        settled = time.monotonic() - began
        print(f"\n{EXECUTIONS} executions: enqueued in {enqueued:.1f}s, all terminal after {settled:.1f}s")

        assert len(listed) == EXECUTIONS, "an execution is listed twice"
        assert set(statuses) == set(ids), "listed ids differ from the started ones"
        assert set(statuses.values()) == {"completed"}

        async def check_log(execution_id: str) -> None:
            async with gate:
                response = await client.get(f"{API}/executions/{execution_id}/events")
            assert response.status_code == 200, response.text
            log = response.json()["items"]
            assert [event["sequence"] for event in log] == list(range(len(log)))
            assert log[0]["type"] == "execution_started"
            assert [event["type"] for event in log].count("execution_completed") == 1
            assert log[-1]["type"] == "execution_completed"

        await asyncio.gather(*(check_log(i) for i in random.Random(7).sample(ids, SAMPLE)))

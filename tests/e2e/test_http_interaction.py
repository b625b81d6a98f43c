"""HTTP: signals, deadlines at start and forks (interaction spec sections 1, 3 and 8),
through the real FastAPI app around a real Engine on each backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.helpers import chain, definition, fn

import cerebelum
from cerebelum.entrypoints.http import create_app

API = "/api/v1"
APPROVAL = definition(
    "approval",
    {"approve": {"type": "wait", "config": {"signal": "approve"}}, "publish": fn("publish")},
    chain("approve", "publish"),
)


@pytest.fixture
async def client(store_url: str, registry: cerebelum.HandlerRegistry) -> AsyncIterator[httpx.AsyncClient]:
    registry.register("publish", lambda ctx: {"published": ctx.data})
    registry.register("broken", lambda ctx: 1 / 0)
    engine = cerebelum.Engine(store_url, handlers=registry, workers=2, poll_interval=0.1)
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    finally:
        await engine.close_async()
        engine.close()


async def settle(client: httpx.AsyncClient, execution_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await client.get(f"{API}/executions/{execution_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < deadline, body["status"]
        await asyncio.sleep(0.05)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_a_signal_over_http_is_acknowledged_with_its_sequence(client):
    assert (await client.post(f"{API}/workflows", json=APPROVAL)).status_code == 201
    started = (await client.post(f"{API}/executions", json={"workflow": "approval"})).json()
    url = f"{API}/executions/{started['execution_id']}/signals/approve"
    first = await client.post(url, json={"payload": {"ok": True}, "key": "hook-1"})
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["execution_id"] == started["execution_id"] and body["signal"] == "approve"
    repeated = await client.post(url, json={"payload": {"ok": False}, "key": "hook-1"})
    assert repeated.status_code == 200 and repeated.json()["sequence"] == body["sequence"]
    done = await settle(client, started["execution_id"])
    assert done["output"] == {"published": {"ok": True}}
    events = (await client.get(f"{API}/executions/{started['execution_id']}/events")).json()["items"]
    assert events[body["sequence"]]["type"] == "signal_received"
    error_of(await client.post(url, json={}), 409)  # it ended


async def test_signal_errors_are_located(client):
    error_of(await client.post(f"{API}/executions/exec-unknown/signals/approve"), 404)
    assert (await client.post(f"{API}/workflows", json=APPROVAL)).status_code == 201
    started = (await client.post(f"{API}/executions", json={"workflow": "approval"})).json()
    base = f"{API}/executions/{started['execution_id']}/signals"
    bad_name = error_of(await client.post(f"{base}/no%20spaces", json={}), 422)
    assert any(d["location"].startswith("path") for d in bad_name["details"])
    extra = error_of(await client.post(f"{base}/approve", json={"payload": 1, "colour": "red"}), 422)
    assert any("colour" in d["location"] for d in extra["details"])
    short_key = error_of(await client.post(f"{base}/approve", json={"key": ""}), 422)
    assert any("key" in d["location"] for d in short_key["details"])
    error_of(await client.post(f"{base}/approve", content=b"{not json", headers={"content-type": "application/json"}), 400)
    error_of(await client.post(f"{base}/approve", content=b"x", headers={"content-type": "text/plain"}), 415)
    no_body = await client.post(f"{base}/approve")  # both fields are optional: no body at all is a null payload
    assert no_body.status_code == 202, no_body.text


async def test_a_deadline_given_at_start_over_http(client):
    assert (await client.post(f"{API}/workflows", json=APPROVAL)).status_code == 201
    response = await client.post(f"{API}/executions", json={"workflow": "approval", "timeout_s": 0.3})
    assert response.status_code == 202 and response.json()["timeout_s"] == 0.3
    done = await settle(client, response.json()["execution_id"])
    assert done["status"] == "failed" and done["error"]["kind"] == "timeout"
    bad = error_of(await client.post(f"{API}/executions", json={"workflow": "approval", "timeout_s": 0}), 422)
    assert any("timeout_s" in d["location"] for d in bad["details"])


async def test_a_failed_execution_is_forked_over_http(client):
    doc = definition("breaks", {"boom": fn("broken")})
    assert (await client.post(f"{API}/workflows", json=doc)).status_code == 201
    started = (await client.post(f"{API}/executions", json={"workflow": "breaks"})).json()
    failed = await settle(client, started["execution_id"])
    assert failed["status"] == "failed"
    response = await client.post(f"{API}/executions/{failed['execution_id']}/fork")
    assert response.status_code == 202, response.text
    fork = response.json()
    assert fork["forked_from"]["execution_id"] == failed["execution_id"]
    assert (await settle(client, fork["execution_id"]))["status"] == "failed"  # the handler is still broken
    at = error_of(await client.post(f"{API}/executions/{failed['execution_id']}/fork", json={"at": 999}), 422)
    assert at["details"][0]["location"] == "body.at"
    error_of(await client.post(f"{API}/executions/exec-unknown/fork", json={}), 404)


async def test_the_openapi_document_has_the_interaction_routes(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    signal = paths["/api/v1/executions/{execution_id}/signals/{name}"]["post"]
    assert {"200", "202", "404", "409", "422"} <= set(signal["responses"])
    fork = paths["/api/v1/executions/{execution_id}/fork"]["post"]
    assert {"202", "404", "409", "422"} <= set(fork["responses"])


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("fork", {"at": False}, "body.at"),
        ("start", {"workflow": "approval", "priority": True}, "body.priority"),
        ("start", {"workflow": "approval", "version": True}, "body.version"),
        ("start", {"workflow": "approval", "virtual_time": 1}, "body.virtual_time"),
        ("start", {"workflow": "approval", "timeout_s": True}, "body.timeout_s"),
        ("start", {"workflow": "approval", "seed": "7"}, "body.seed"),
        ("queue", {"concurrency": True}, "body.concurrency"),
        ("schedule", {"name": "s", "workflow": "approval", "every_s": True}, "body.every_s"),
    ],
)
async def test_json_values_of_the_wrong_type_are_refused_not_coerced(client, path, body, location):
    """`true` is not 1 and "7" is not 7: a body is taken as JSON typed it (found by schemathesis: fork `{"at": false}`)."""
    assert (await client.post(f"{API}/workflows", json=APPROVAL)).status_code == 201
    started = (await client.post(f"{API}/executions", json={"workflow": "approval"})).json()
    url = {
        "fork": f"{API}/executions/{started['execution_id']}/fork",
        "start": f"{API}/executions",
        "queue": f"{API}/queues/strict",
        "schedule": f"{API}/schedules",
    }[path]
    method = client.put if path == "queue" else client.post
    error = error_of(await method(url, json=body), 422)
    assert error["details"][0]["location"] == location, error
    assert len((await client.get(f"{API}/executions")).json()["items"]) == 1  # nothing else started


async def test_an_integral_number_is_an_integer_as_json_schema_says(client):
    """Not stricter than the schema either (a StrictInt would refuse 2.0, which schemathesis sends)."""
    queue = await client.put(f"{API}/queues/whole", json={"concurrency": 2.0})
    assert queue.status_code == 200, queue.text
    assert queue.json()["concurrency"] == 2

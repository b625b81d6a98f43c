"""End-to-end tests of the HTTP API (docs: interfaces.md, "HTTP API").

httpx drives the real FastAPI app in-process (ASGI transport) around a real
Engine on each backend; executions enqueued over HTTP are run by the engine's
in-process pool, and the tests poll GET /executions/{id} until they settle.
Every error answer is checked for the shared body and for the absence of a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
import yaml
from tests.helpers import chain, definition, fn

import cerebelum
from cerebelum.domain.errors import StoreUnavailable
from cerebelum.entrypoints.http import create_app

API = "/api/v1"
TERMINAL = {"completed", "failed"}
EXECUTION_KEYS = {"execution_id", "workflow", "version", "status", "input", "output", "error", "started_at", "completed_at"}


def register(registry: cerebelum.HandlerRegistry) -> None:
    async def slow(ctx: Any) -> Any:
        await asyncio.sleep(0.3)
        return ctx.data

    registry.register("double", lambda ctx: {"n": ctx.data["n"] * 2})
    registry.register("slow", slow)


class Api:
    """The client, the engine behind it and a few helpers."""

    def __init__(self, client: httpx.AsyncClient, engine: cerebelum.Engine) -> None:
        self.client = client
        self.engine = engine

    async def workflow(self, doc: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"{API}/workflows", json=doc)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def execute(self, workflow: str | dict[str, Any], data: Any = None, **extra: Any) -> dict[str, Any]:
        body = {"workflow": workflow, **extra}
        if data is not None:
            body["input"] = data
        response = await self.client.post(f"{API}/executions", json=body)
        assert response.status_code == 202, response.text
        result: dict[str, Any] = response.json()
        return result

    async def settle(self, execution_id: str, statuses: Iterable[str] = TERMINAL, timeout: float = 20.0) -> dict[str, Any]:
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            response = await self.client.get(f"{API}/executions/{execution_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in wanted:
                return body
            assert time.monotonic() < deadline, f"still {body['status']} after {timeout}s"
            await asyncio.sleep(0.05)


async def _api(url: str, registry: cerebelum.HandlerRegistry, **app_options: Any) -> AsyncIterator[Api]:
    register(registry)
    engine = cerebelum.Engine(url, handlers=registry, workers=2, poll_interval=0.1)
    app = create_app(engine, **app_options)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, engine)
    finally:
        await engine.close_async()
        engine.close()


@pytest.fixture
async def api(store_url: str, registry: cerebelum.HandlerRegistry) -> AsyncIterator[Api]:
    """The API over each backend (memory, SQLite, PostgreSQL)."""
    async for value in _api(store_url, registry):
        yield value


@pytest.fixture
async def small_api(registry: cerebelum.HandlerRegistry) -> AsyncIterator[Api]:
    """Backend-independent behaviour: memory store, a 200-byte body limit."""
    async for value in _api("memory://", registry, max_body_bytes=200):
        yield value


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text and 'File "' not in response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    error: dict[str, Any] = body["error"]
    return error


def doubler(name: str, **extra: Any) -> dict[str, Any]:
    return definition(name, {"a": fn("double"), "b": fn("double")}, chain("a", "b"), **extra)


# -- workflows -------------------------------------------------------------------


async def test_workflow_create_show_and_versions(api: Api) -> None:
    first = await api.workflow(doubler("orders"))
    assert set(first) == {"id", "name", "version", "definition", "created_at"}
    assert (first["name"], first["version"]) == ("orders", 1)
    assert first["created_at"].endswith("Z")
    assert (await api.workflow(doubler("orders")))["version"] == 1  # identical: reused
    second = await api.workflow(definition("orders", {"a": fn("double")}))
    assert second["version"] == 2

    latest = await api.client.get(f"{API}/workflows/orders")
    assert latest.status_code == 200 and latest.json()["version"] == 2
    versions = await api.client.get(f"{API}/workflows/orders/versions")
    assert versions.status_code == 200
    assert [w["version"] for w in versions.json()["items"]] == [1, 2]
    one = await api.client.get(f"{API}/workflows/orders/versions/1")
    assert one.status_code == 200 and one.json() == first

    assert_error(await api.client.get(f"{API}/workflows/nope"), 404, "not_found")
    assert_error(await api.client.get(f"{API}/workflows/nope/versions"), 404, "not_found")
    assert_error(await api.client.get(f"{API}/workflows/orders/versions/9"), 404, "not_found")
    error = assert_error(await api.client.get(f"{API}/workflows/orders/versions/zero"), 422, "invalid_request")
    assert error["details"][0]["location"] == "path.version"


async def test_explicit_version_with_other_content_is_a_conflict(api: Api) -> None:
    await api.workflow(doubler("pinned", version=1))
    again = await api.client.post(f"{API}/workflows", json=doubler("pinned", version=1))
    assert again.status_code == 201 and again.json()["version"] == 1
    changed = definition("pinned", {"a": fn("double")}, version=1)
    error = assert_error(await api.client.post(f"{API}/workflows", json=changed), 409, "conflict")
    assert "pinned" in error["message"]


async def test_yaml_definition_by_content_type(api: Api) -> None:
    text = yaml.safe_dump(doubler("from-yaml"))
    for content_type in ("application/yaml", "text/yaml; charset=utf-8"):
        response = await api.client.post(f"{API}/workflows", content=text, headers={"content-type": content_type})
        assert response.status_code == 201, response.text
        assert response.json()["definition"]["nodes"]["a"]["config"]["handler"] == "double"
    bad = await api.client.post(f"{API}/workflows", content="name: [unclosed", headers={"content-type": "application/yaml"})
    assert_error(bad, 422, "invalid_document")


async def test_invalid_definition_reports_every_problem_with_its_location(api: Api) -> None:
    bad = definition("bad", {"a": fn("nope")}, [{"from": "a", "to": "zzz"}], entrypoint="missing")
    error = assert_error(await api.client.post(f"{API}/workflows", json=bad), 422, "invalid_definition")
    locations = {d["location"] for d in error["details"]}
    assert {"nodes.a.config.handler", "entrypoint", "edges[0].to"} <= locations
    assert all(d["message"] for d in error["details"])

    not_object = assert_error(await api.client.post(f"{API}/workflows", json=[1, 2]), 422, "invalid_definition")
    assert not_object["details"][0]["location"] == "(document)"
    malformed = await api.client.post(f"{API}/workflows", content=b'{"name": ', headers={"content-type": "application/json"})
    assert assert_error(malformed, 400, "invalid_json")["details"][0]["location"] == "body"
    not_utf8 = await api.client.post(f"{API}/workflows", content=b"\xff\xfe{}", headers={"content-type": "application/json"})
    assert_error(not_utf8, 422, "invalid_document")
    assert (await api.client.get(f"{API}/workflows")).json()["items"] == []


async def test_workflow_list_is_paginated_newest_first(api: Api) -> None:
    for name in ("w1", "w2", "w3", "w4", "w5"):
        await api.workflow(doubler(name))
        await asyncio.sleep(0.002)  # distinct created_at on every backend
    await api.workflow(definition("w1", {"a": fn("double")}))  # w1 version 2, newest
    seen: list[tuple[str, int]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        response = await api.client.get(f"{API}/workflows", params=params)
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [(w["name"], w["version"]) for w in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [("w1", 2), ("w5", 1), ("w4", 1), ("w3", 1), ("w2", 1), ("w1", 1)]

    only = (await api.client.get(f"{API}/workflows", params={"name": "w1"})).json()
    assert [w["version"] for w in only["items"]] == [2, 1] and only["next_cursor"] is None
    assert_error(await api.client.get(f"{API}/workflows", params={"cursor": "nope"}), 422, "invalid_request")
    error = assert_error(await api.client.get(f"{API}/workflows", params={"limit": 0}), 422, "invalid_request")
    assert error["details"][0]["location"] == "query.limit"


# -- executions ------------------------------------------------------------------


async def test_execute_over_http_then_inspect(api: Api) -> None:
    await api.workflow(doubler("calc"))
    pending = await api.execute("calc", {"n": 3})
    assert set(pending) >= EXECUTION_KEYS
    assert pending["status"] in ("pending", "running") and pending["input"] == {"n": 3}
    done = await api.settle(pending["execution_id"])
    assert done["status"] == "completed", done
    assert done["output"] == {"n": 12}
    assert done["started_at"].endswith("Z") and done["completed_at"].endswith("Z")
    execution_id = done["execution_id"]

    log = (await api.client.get(f"{API}/executions/{execution_id}/events")).json()["items"]
    assert [e["sequence"] for e in log] == list(range(len(log)))
    assert log[0]["type"] == "execution_started" and log[-1]["type"] == "execution_completed"
    assert {"sequence", "type", "node_id", "payload", "timestamp"} <= set(log[0])
    ranged = await api.client.get(f"{API}/executions/{execution_id}/events", params={"from": 1, "to": 2})
    assert [e["sequence"] for e in ranged.json()["items"]] == [1, 2]
    tail = await api.client.get(f"{API}/executions/{execution_id}/events", params={"from": len(log) - 1})
    assert tail.json()["items"] == log[-1:]

    first = (await api.client.get(f"{API}/executions/{execution_id}/state", params={"at": 0})).json()
    assert (first["sequence"], first["status"], first["input"]) == (0, "running", {"n": 3})
    last = (await api.client.get(f"{API}/executions/{execution_id}/state")).json()
    assert (last["status"], last["output"], last["sequence"]) == ("completed", {"n": 12}, len(log) - 1)
    error = assert_error(
        await api.client.get(f"{API}/executions/{execution_id}/state", params={"at": -1}), 422, "invalid_request"
    )
    assert error["details"][0]["location"] == "query.at"

    for strict in ("false", "true"):
        verdict = await api.client.post(f"{API}/executions/{execution_id}/replay", params={"strict": strict})
        assert verdict.status_code == 200, verdict.text
        report = verdict.json()
        assert report["identical"] is True and report["divergence"] is None
        assert report["strict"] is (strict == "true") and report["execution_id"] == execution_id


async def test_execution_input_version_and_inline_definition(api: Api) -> None:
    await api.workflow(doubler("multi"))
    await api.workflow(definition("multi", {"a": fn("double")}))
    v1 = await api.settle((await api.execute("multi", {"n": 1}, version=1))["execution_id"])
    assert (v1["version"], v1["output"]) == (1, {"n": 4})
    latest = await api.settle((await api.execute("multi", {"n": 1}))["execution_id"])
    assert (latest["version"], latest["output"]) == (2, {"n": 2})
    inline = await api.settle((await api.execute(doubler("inline"), {"n": 5}))["execution_id"])
    assert (inline["workflow"], inline["output"]) == ("inline", {"n": 20})
    no_input = await api.execute("multi")
    assert no_input["input"] == {}
    await api.settle(no_input["execution_id"])

    assert_error(await api.client.post(f"{API}/executions", json={"workflow": "ghost"}), 404, "not_found")
    assert_error(await api.client.post(f"{API}/executions", json={"workflow": "multi", "version": 7}), 404, "not_found")
    missing = assert_error(await api.client.post(f"{API}/executions", json={"input": {}}), 422, "invalid_request")
    assert [d["location"] for d in missing["details"]] == ["body.workflow"]
    malformed = await api.client.post(f"{API}/executions", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(malformed, 400, "invalid_json")
    bad_definition = definition("broken", {"a": fn("nope")})
    error = assert_error(await api.client.post(f"{API}/executions", json={"workflow": bad_definition}), 422, "invalid_definition")
    assert error["details"] == [{"location": "nodes.a.config.handler", "message": "unknown handler 'nope'"}]


async def test_execution_list_filters_and_pages(api: Api) -> None:
    await api.workflow(doubler("left"))
    await api.workflow(doubler("right"))
    ids = []
    for name in ("left", "right", "left"):
        ids.append((await api.execute(name, {"n": 1}))["execution_id"])
        await asyncio.sleep(0.002)
    for execution_id in ids:
        await api.settle(execution_id)

    every = (await api.client.get(f"{API}/executions")).json()
    assert [e["execution_id"] for e in every["items"]] == ids[::-1] and every["next_cursor"] is None
    lefts = (await api.client.get(f"{API}/executions", params={"workflow": "left", "status": "completed"})).json()
    assert [e["execution_id"] for e in lefts["items"]] == [ids[2], ids[0]]
    assert (await api.client.get(f"{API}/executions", params={"status": "paused"})).json()["items"] == []

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
        page = (await api.client.get(f"{API}/executions", params=params)).json()
        seen += [e["execution_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    error = assert_error(await api.client.get(f"{API}/executions", params={"status": "bogus"}), 422, "invalid_request")
    assert error["details"][0]["location"] == "query.status.0"  # the first value given


async def test_pause_resume_cancel_and_illegal_transitions(api: Api) -> None:
    await api.workflow(definition("slowly", {"a": fn("slow"), "b": fn("slow"), "c": fn("slow")}, chain("a", "b", "c")))
    execution_id = (await api.execute("slowly", {"n": 1}))["execution_id"]
    paused = await api.client.post(f"{API}/executions/{execution_id}/pause")
    assert paused.status_code == 200, paused.text
    assert set(paused.json()) >= EXECUTION_KEYS
    assert (await api.settle(execution_id, {"paused"}))["status"] == "paused"
    error = assert_error(await api.client.post(f"{API}/executions/{execution_id}/pause"), 409, "illegal_transition")
    assert "paused" in error["message"]

    resumed = await api.client.post(f"{API}/executions/{execution_id}/resume")
    assert resumed.status_code == 200, resumed.text
    done = await api.settle(execution_id)
    assert (done["status"], done["output"]) == ("completed", {"n": 1})
    for control in ("pause", "resume", "cancel"):
        assert_error(await api.client.post(f"{API}/executions/{execution_id}/{control}"), 409, "illegal_transition")

    other = (await api.execute("slowly", {"n": 2}))["execution_id"]
    cancelled = await api.client.post(f"{API}/executions/{other}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    failed = await api.settle(other)
    assert failed["status"] == "failed" and failed["error"]["kind"] == "cancelled"


async def test_unknown_execution_is_404_on_every_route(api: Api) -> None:
    ghost = "exec-00000000000000000000000000"
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/state"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
        ("POST", "/replay"),
    ]:
        response = await api.client.request(method, f"{API}/executions/{ghost}{path}")
        assert_error(response, 404, "not_found")
    assert_error(await api.client.get(f"{API}/no/such/route"), 404, "not_found")
    assert_error(await api.client.delete(f"{API}/executions"), 405, "method_not_allowed")


# -- health, limits, failures, OpenAPI (backend-independent) --------------------------


async def test_health_and_readiness(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}

    def down(*args: Any) -> Any:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(api.engine.store.workflows, "list", down)
    assert_error(await api.client.get("/readyz"), 503, "store_unavailable")
    assert (await api.client.get("/healthz")).status_code == 200


async def test_oversized_bodies_are_413(small_api: Api) -> None:
    big = doubler("big", description="x" * 500)
    assert_error(await small_api.client.post(f"{API}/workflows", json=big), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bytes received are counted
        for _ in range(10):
            yield b" " * 50

    streamed = await small_api.client.post(f"{API}/executions", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "payload_too_large")
    small = await small_api.client.post(f"{API}/workflows", json=definition("s", {"a": fn("double")}))
    assert small.status_code == 201, small.text


async def test_store_errors_are_503_and_crashes_a_generic_500(small_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(*args: Any) -> Any:
        raise StoreUnavailable("the database is down")

    async def crash(*args: Any) -> Any:
        raise RuntimeError("secret internals at /srv/app.py line 12")

    monkeypatch.setattr(small_api.engine, "get_workflow_async", unavailable)
    assert_error(await small_api.client.get(f"{API}/workflows/x"), 503, "store_unavailable")
    monkeypatch.setattr(small_api.engine, "status_async", crash)
    error = assert_error(await small_api.client.get(f"{API}/executions/exec-1"), 500, "internal_error")
    assert "secret" not in error["message"] and error["details"] == []


async def test_openapi_documents_every_route_with_schemas(small_api: Api) -> None:
    response = await small_api.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    expected = {
        ("post", f"{API}/workflows"): "201",
        ("get", f"{API}/workflows"): "200",
        ("get", f"{API}/workflows/{{name}}"): "200",
        ("get", f"{API}/workflows/{{name}}/versions"): "200",
        ("get", f"{API}/workflows/{{name}}/versions/{{version}}"): "200",
        ("post", f"{API}/executions"): "202",
        ("get", f"{API}/executions"): "200",
        ("get", f"{API}/executions/{{execution_id}}"): "200",
        ("get", f"{API}/executions/{{execution_id}}/events"): "200",
        ("get", f"{API}/executions/{{execution_id}}/state"): "200",
        ("post", f"{API}/executions/{{execution_id}}/pause"): "200",
        ("post", f"{API}/executions/{{execution_id}}/resume"): "200",
        ("post", f"{API}/executions/{{execution_id}}/cancel"): "200",
        ("post", f"{API}/executions/{{execution_id}}/replay"): "200",
        ("get", "/healthz"): "200",
        ("get", "/readyz"): "200",
    }
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert set(expected) <= documented
    for (method, path), success in expected.items():
        operation = doc["paths"][path][method]
        schema = operation["responses"][success]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (method, path, schema)
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), (method, path)
    create = doc["paths"][f"{API}/workflows"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml", "text/yaml"} <= set(create)
    execute = doc["paths"][f"{API}/executions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert execute["$ref"].endswith("/ExecutionIn")
    schemas = doc["components"]["schemas"]
    assert {"workflow", "version", "input"} <= set(schemas["ExecutionIn"]["properties"])
    assert set(schemas["ExecutionOut"]["properties"]) >= EXECUTION_KEYS
    assert {"code", "message", "details"} <= set(schemas["ErrorInfo"]["properties"])
    assert "HTTPValidationError" not in schemas


# -- edges of the contract (interaction.md section 11) ------------------------------


async def test_state_at_outside_the_log_is_422_naming_at_and_the_range(small_api: Api) -> None:
    await small_api.workflow(doubler("ranged"))
    execution_id = (await small_api.execute("ranged", {"n": 1}))["execution_id"]
    done = await small_api.settle(execution_id)
    last = done["last_sequence"]
    at_end = await small_api.client.get(f"{API}/executions/{execution_id}/state", params={"at": last})
    assert at_end.status_code == 200 and at_end.json()["sequence"] == last
    for beyond in (last + 1, 9999):
        error = assert_error(
            await small_api.client.get(f"{API}/executions/{execution_id}/state", params={"at": beyond}), 422, "invalid_request"
        )
        assert error["details"][0]["location"] == "query.at"
        assert f"0..{last}" in error["message"] and str(beyond) in error["message"]


async def test_a_body_that_is_not_json_is_400_and_another_content_type_415(small_api: Api) -> None:
    post = small_api.client.post
    for path in ("/workflows", "/executions"):
        broken = await post(f"{API}{path}", content=b'{"name": ', headers={"content-type": "application/json"})
        assert "line 1" in assert_error(broken, 400, "invalid_json")["message"] or path == "/executions"
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            refused = await post(f"{API}{path}", content=b'{"workflow": "x"}', headers={"content-type": content_type})
            error = assert_error(refused, 415, "unsupported_media_type")
            assert content_type in error["message"] and error["details"][0]["location"] == "header.content-type"
    # JSON by its +json suffix, YAML on /workflows only
    document = json.dumps(definition("suffixed", {"a": fn("double")}))
    suffixed = await post(f"{API}/workflows", content=document, headers={"content-type": "application/vnd.x+json"})
    assert suffixed.status_code == 201, suffixed.text
    yaml_start = await post(f"{API}/executions", content=b"workflow: suffixed", headers={"content-type": "application/yaml"})
    assert_error(yaml_start, 415, "unsupported_media_type")


async def test_repeated_status_filters_combine_and_other_repeats_are_refused(api: Api) -> None:
    def boom(ctx: Any) -> Any:
        raise RuntimeError("boom")

    api.engine.handlers.register("boom", boom)
    await api.workflow(doubler("mixed"))
    await api.workflow(definition("failing", {"a": fn("boom")}))
    good = (await api.execute("mixed", {"n": 1}))["execution_id"]
    bad = (await api.execute("failing", {"n": 1}))["execution_id"]
    await api.settle(good)
    await api.settle(bad)
    both = await api.client.get(f"{API}/executions?status=completed&status=failed")
    assert both.status_code == 200, both.text
    assert {e["execution_id"] for e in both.json()["items"]} == {good, bad}
    only = (await api.client.get(f"{API}/executions?status=failed&status=paused")).json()["items"]
    assert [e["execution_id"] for e in only] == [bad]
    for query in ("workflow=mixed&workflow=failing", "limit=1&limit=2"):
        error = assert_error(await api.client.get(f"{API}/executions?{query}"), 422, "invalid_request")
        key = query.split("=")[0]
        assert error["details"][0]["location"] == f"query.{key}" and "2 times" in error["message"]
    assert_error(await api.client.get(f"{API}/workflows?name=a&name=b"), 422, "invalid_request")


async def test_http_starts_take_seed_and_virtual_time(small_api: Api) -> None:
    await small_api.workflow(definition("timed", {"wait": {"type": "delay", "config": {"seconds": 86400}}}))
    started = await small_api.client.post(f"{API}/executions", json={"workflow": "timed", "seed": 42, "virtual_time": True})
    assert started.status_code == 202, started.text
    assert (started.json()["seed"], started.json()["virtual_time"]) == (42, True)
    done = await small_api.settle(started.json()["execution_id"], timeout=10)  # a day's delay, instant in virtual time
    assert done["status"] == "completed"
    plain = await small_api.execute("timed")
    assert plain["virtual_time"] is False
    await small_api.client.post(f"{API}/executions/{plain['execution_id']}/cancel")


async def test_no_swagger_ui_from_a_cdn(small_api: Api) -> None:
    for path in ("/docs", "/redoc"):
        response = await small_api.client.get(path)
        assert "cdn.jsdelivr.net" not in response.text and "swagger" not in response.text.lower(), path
    assert (await small_api.client.get("/openapi.json")).status_code == 200

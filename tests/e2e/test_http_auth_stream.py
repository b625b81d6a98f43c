"""End-to-end tests of the HTTP API's later routes (docs: interfaces.md, "HTTP API"):
soft delete of a workflow version, live events over Server-Sent Events, bearer
token auth (and `cerebelum serve`'s refusal to go unprotected off loopback),
and `/metrics` in the Prometheus text format.

Same style as test_http_api.py: httpx drives the real app in-process around
a real Engine whose in-process pool runs what is enqueued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_http_api import API, Api, _api, assert_error, doubler
from tests.e2e.test_serve import CLI, FLOW, HANDLERS, free_port
from tests.helpers import chain, definition, fn, wait_until_healthy

import cerebelum
from cerebelum.entrypoints.http import create_app
from cerebelum.entrypoints.http.auth import TokenConfigError, load_tokens

TOKEN = "s3cr3t-token-Zq9"  # distinctive, so that any leak is found by a plain search
OTHER = "second-token-Xy7"


def slow_flow(name: str) -> dict[str, Any]:
    return definition(name, {"a": fn("slow"), "b": fn("slow")}, chain("a", "b"))


@pytest.fixture
async def api(store_url: str, registry: cerebelum.HandlerRegistry) -> AsyncIterator[Api]:
    async for value in _api(store_url, registry):
        yield value


@pytest.fixture
async def mem_api(registry: cerebelum.HandlerRegistry) -> AsyncIterator[Api]:
    async for value in _api("memory://", registry):
        yield value


@pytest.fixture
async def auth_api(registry: cerebelum.HandlerRegistry) -> AsyncIterator[Api]:
    async for value in _api("memory://", registry, tokens=frozenset({TOKEN, OTHER}), require_auth=True):
        yield value


# -- DELETE /workflows/{name}/versions/{version} ---------------------------------


async def test_delete_a_version_hides_it_and_keeps_its_executions(api: Api) -> None:
    await api.workflow(doubler("orders"))
    second = await api.workflow(definition("orders", {"a": fn("double")}))
    assert second["version"] == 2
    execution = await api.execute("orders", {"n": 1}, version=1)
    await api.settle(execution["execution_id"])

    response = await api.client.delete(f"{API}/workflows/orders/versions/1")
    assert response.status_code == 204 and response.content == b""
    versions = await api.client.get(f"{API}/workflows/orders/versions")
    assert [w["version"] for w in versions.json()["items"]] == [2]
    assert (await api.client.get(f"{API}/workflows/orders")).json()["version"] == 2
    listed = await api.client.get(f"{API}/workflows")
    assert [(w["name"], w["version"]) for w in listed.json()["items"]] == [("orders", 2)]
    kept = await api.client.get(f"{API}/executions/{execution['execution_id']}")
    assert kept.status_code == 200 and kept.json()["status"] == "completed"
    assert (await api.client.get(f"{API}/executions/{execution['execution_id']}/events")).status_code == 200
    assert (await api.execute("orders", {"n": 1}))["version"] == 2  # new executions take the live version

    assert_error(await api.client.delete(f"{API}/workflows/orders/versions/1"), 404, "not_found")  # already deleted
    assert_error(await api.client.delete(f"{API}/workflows/nope/versions/1"), 404, "not_found")
    assert_error(await api.client.delete(f"{API}/workflows/orders/versions/9"), 404, "not_found")
    assert_error(await api.client.delete(f"{API}/workflows/orders/versions/0"), 422, "invalid_request")


async def test_delete_is_refused_while_an_execution_is_not_terminal(api: Api) -> None:
    await api.workflow(slow_flow("slowpoke"))
    execution = await api.execute("slowpoke", {"n": 1})
    error = assert_error(await api.client.delete(f"{API}/workflows/slowpoke/versions/1"), 409, "conflict")
    assert "slowpoke" in error["message"]
    await api.settle(execution["execution_id"])
    assert (await api.client.delete(f"{API}/workflows/slowpoke/versions/1")).status_code == 204


# -- GET /executions/{id}/stream -------------------------------------------------


def parse_sse(text: str) -> list[dict[str, str]]:
    """The events of an SSE body, each as {field: value}."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        if fields:
            events.append(fields)
    return events


def check_frames(frames: list[dict[str, str]]) -> list[dict[str, Any]]:
    events = []
    for frame in frames:
        assert set(frame) == {"id", "event", "data"}, frame
        event = json.loads(frame["data"])
        assert frame["id"] == str(event["sequence"]) and frame["event"] == event["type"]
        events.append(event)
    return events


async def test_stream_delivers_every_event_in_order_and_resumes(api: Api) -> None:
    await api.workflow(slow_flow("streamed"))
    execution = await api.execute("streamed", {"n": 1})
    exec_id = execution["execution_id"]

    response = await api.client.get(f"{API}/executions/{exec_id}/stream")  # returns once terminal
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    streamed = check_frames(parse_sse(response.text))
    log = (await api.client.get(f"{API}/executions/{exec_id}/events")).json()["items"]
    assert streamed == log
    assert [e["sequence"] for e in streamed] == list(range(len(log)))
    assert streamed[0]["type"] == "execution_started" and streamed[-1]["type"] == "execution_completed"

    resumed = await api.client.get(f"{API}/executions/{exec_id}/stream", headers={"Last-Event-ID": "2"})
    assert check_frames(parse_sse(resumed.text)) == log[3:]
    by_query = await api.client.get(f"{API}/executions/{exec_id}/stream", params={"from": 3})
    assert check_frames(parse_sse(by_query.text)) == log[3:]
    # a reconnecting EventSource keeps its URL's ?from= and sends Last-Event-ID: the header wins
    both = await api.client.get(f"{API}/executions/{exec_id}/stream?from=0", headers={"Last-Event-ID": str(len(log) - 2)})
    assert check_frames(parse_sse(both.text)) == log[-1:]
    done = await api.client.get(f"{API}/executions/{exec_id}/stream", headers={"Last-Event-ID": str(len(log) - 1)})
    assert done.status_code == 200 and parse_sse(done.text) == []


async def test_stream_is_live_while_the_execution_runs(mem_api: Api) -> None:
    """Driven at the ASGI level: the first event is sent before the execution ends."""
    await mem_api.workflow(slow_flow("live"))
    exec_id = (await mem_api.execute("live", {"n": 1}))["execution_id"]
    app = mem_api.client._transport.app  # type: ignore[attr-defined]
    chunks: list[bytes] = []
    status_at_first_chunk: list[str] = []
    start: dict[str, Any] = {}
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body" and message.get("body"):
            if not chunks:
                status_at_first_chunk.append((await mem_api.engine.status_async(exec_id)).status)
            chunks.append(message["body"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"{API}/executions/{exec_id}/stream",
        "raw_path": f"{API}/executions/{exec_id}/stream".encode(),
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    disconnect.set()
    assert start["status"] == 200
    assert status_at_first_chunk and status_at_first_chunk[0] not in ("completed", "failed")
    events = check_frames(parse_sse(b"".join(chunks).decode()))
    assert events[-1]["type"] == "execution_completed"
    assert [e["sequence"] for e in events] == list(range(len(events)))


async def test_quiet_stream_sends_keep_alives(registry: cerebelum.HandlerRegistry) -> None:
    """While an execution waits on a timer, comment lines keep the connection busy;
    the events around them are untouched."""
    async for api in _api("memory://", registry, sse_keepalive=0.1):
        waits = definition("waits", {"pause": {"type": "delay", "config": {"seconds": 1}}, "a": fn("slow")}, chain("pause", "a"))
        await api.workflow(waits)
        exec_id = (await api.execute("waits", {"n": 1}))["execution_id"]
        response = await api.client.get(f"{API}/executions/{exec_id}/stream")
        assert response.status_code == 200
        keepalives = [line for line in response.text.splitlines() if line.startswith(":")]
        assert len(keepalives) >= 3 and set(keepalives) == {": keep-alive"}
        events = check_frames(parse_sse(response.text))
        assert [e["sequence"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "execution_completed"


async def test_stream_errors_before_streaming(mem_api: Api) -> None:
    missing = await mem_api.client.get(f"{API}/executions/exec-nope/stream")
    assert_error(missing, 404, "not_found")
    await mem_api.workflow(doubler("d"))
    exec_id = (await mem_api.execute("d", {"n": 1}))["execution_id"]
    bad = await mem_api.client.get(f"{API}/executions/{exec_id}/stream", headers={"Last-Event-ID": "abc"})
    assert_error(bad, 422, "invalid_request")
    assert_error(await mem_api.client.get(f"{API}/executions/{exec_id}/stream?from=-1"), 422, "invalid_request")


# -- auth --------------------------------------------------------------------------


async def test_routes_need_a_bearer_token(auth_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = auth_api.client
    seen: list[httpx.Response] = []
    for path in (f"{API}/workflows", f"{API}/executions", "/metrics", "/openapi.json", f"{API}/executions/x/stream"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}):
            response = await client.get(path, headers=headers)
            error = assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert error["details"] == []
            seen.append(response)
    # a token that is a prefix or an extension of a valid one is refused too
    for near in (TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        seen.append(await client.get(f"{API}/workflows", headers={"Authorization": f"Bearer {near}"}))
        assert seen[-1].status_code == 401
    # bodies are refused before they are read
    refused = await client.post(f"{API}/workflows", json=doubler("x"), headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401

    for token in (TOKEN, OTHER):
        auth = {"Authorization": f"Bearer {token}"}
        created = await client.post(f"{API}/workflows", json=doubler(f"wf-{token[:3]}"), headers=auth)
        assert created.status_code == 201, created.text
        seen.append(created)
        seen.append(await client.get(f"{API}/workflows", headers={"Authorization": f"bearer {token}"}))
        assert seen[-1].status_code == 200
        seen.append(await client.get("/metrics", headers=auth))
        assert seen[-1].status_code == 200
        assert_error(await client.get(f"{API}/executions/nope", headers=auth), 404, "not_found")

    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        seen.append(response)

    for response in seen:
        assert TOKEN not in response.text and OTHER not in response.text
        assert all(TOKEN not in v and OTHER not in v for v in response.headers.values())
    assert TOKEN not in caplog.text and OTHER not in caplog.text
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN not in repr(record.args)


async def test_openapi_documents_the_new_routes(auth_api: Api) -> None:
    doc = (await auth_api.client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    paths = doc["paths"]
    delete = paths[f"{API}/workflows/{{name}}/versions/{{version}}"]["delete"]["responses"]
    assert {"204", "401", "404", "409"} <= set(delete)
    stream = paths[f"{API}/executions/{{execution_id}}/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {"401", "404"} <= set(stream["responses"])
    assert any(p["name"].lower() == "last-event-id" for p in stream["parameters"])
    metrics = paths["/metrics"]["get"]["responses"]
    assert "text/plain" in metrics["200"]["content"] and "401" in metrics
    assert "401" not in paths["/readyz"]["get"]["responses"]


async def test_without_tokens_the_api_is_open(mem_api: Api) -> None:
    assert (await mem_api.client.get(f"{API}/workflows")).status_code == 200
    assert (await mem_api.client.get("/metrics")).status_code == 200


def test_require_auth_without_a_token_is_refused() -> None:
    with cerebelum.Engine("memory://", workers=0) as engine, pytest.raises(ValueError):
        create_app(engine, require_auth=True)


def test_tokens_come_from_the_environment_and_a_file(tmp_path: Path) -> None:
    assert load_tokens({}) is None
    assert load_tokens({"CEREBELUM_API_TOKENS": " , "}) is None
    assert load_tokens({"CEREBELUM_API_TOKENS": f" {TOKEN}, {OTHER} ,"}) == {TOKEN, OTHER}
    file = tmp_path / "tokens"
    file.write_text(f"# the operators' tokens\n{TOKEN}\n\n  third  \n")
    found = load_tokens({"CEREBELUM_API_TOKENS_FILE": str(file), "CEREBELUM_API_TOKENS": OTHER})
    assert found == {TOKEN, OTHER, "third"}
    with pytest.raises(TokenConfigError) as raised:
        load_tokens({"CEREBELUM_API_TOKENS_FILE": str(tmp_path / "missing")})
    assert "missing" in str(raised.value)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_API_TOKENS")}
    return {**env, **extra}


def test_serve_off_loopback_without_a_token_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_env()
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0] and "CEREBELUM_API_TOKENS" in lines[0]
    missing = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(CEREBELUM_API_TOKENS_FILE=str(tmp_path / "absent")),
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def _get(url: str, token: str | None = None, body: object | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_with_a_token_file_requires_it(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(HANDLERS)
    (tmp_path / "tokens").write_text(f"{TOKEN}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [CLI, "serve", "--host", "0.0.0.0", "--port", str(port), "--handlers", "h.py", "--workers", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(CEREBELUM_API_TOKENS_FILE=str(tmp_path / "tokens")),
    )
    try:
        wait_until_healthy(base, server)
        assert _get(f"{base}/healthz") == (200, '{"status":"ok"}')
        status, body = _get(f"{base}/api/v1/workflows", body=FLOW)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        assert _get(f"{base}/api/v1/workflows", "wrong", FLOW)[0] == 401
        assert _get(f"{base}/api/v1/workflows", TOKEN, FLOW)[0] == 201
        assert _get(f"{base}/metrics", TOKEN)[0] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err.decode()
    assert TOKEN not in out.decode() + err.decode()
    assert "1 token(s)" in err.decode()


# -- /metrics ----------------------------------------------------------------------

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$'
)


def parse_metrics(text: str) -> dict[str, float]:
    """Samples by `name{labels}`; checks the exposition format on the way."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "histogram") and name not in typed
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, line
        name = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"{name} has no TYPE line before it"
        key = line.rsplit(" ", 1)[0]
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(line.rsplit(" ", 1)[1])
    return samples


async def scrape(api: Api) -> dict[str, float]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(response.text)


async def test_metrics_gauges_and_counters_move_after_executions(api: Api) -> None:
    def boom(ctx: Any) -> Any:
        raise RuntimeError("no")

    api.engine.handlers.register("boom", boom)
    before = await scrape(api)
    for status in ("pending", "running", "completed", "failed", "paused"):
        assert f'cerebelum_executions{{status="{status}"}}' in before
    assert "cerebelum_executions_parked" in before and "cerebelum_leases_held" in before

    await api.workflow(doubler("metered.wf-1"))
    await api.workflow(definition("breaks", {"x": fn("boom")}))
    done = await api.execute("metered.wf-1", {"n": 2})
    broken = await api.execute("breaks", {"n": 2})
    await api.settle(done["execution_id"])
    assert (await api.settle(broken["execution_id"]))["status"] == "failed"

    after = await scrape(api)
    label = 'workflow="metered.wf-1"'
    assert after[f"cerebelum_executions_started_total{{{label}}}"] == 1
    assert after[f"cerebelum_executions_completed_total{{{label}}}"] == 1
    assert after['cerebelum_executions_started_total{workflow="breaks"}'] == 1
    assert after['cerebelum_executions_failed_total{workflow="breaks"}'] == 1
    assert f"cerebelum_executions_failed_total{{{label}}}" not in after
    assert after[f"cerebelum_node_duration_seconds_count{{{label}}}"] == 2  # two function nodes
    assert after[f"cerebelum_node_duration_seconds_sum{{{label}}}"] >= 0
    assert after[f'cerebelum_node_duration_seconds_bucket{{{label},le="+Inf"}}'] == 2
    buckets = [v for k, v in after.items() if k.startswith(f"cerebelum_node_duration_seconds_bucket{{{label}")]
    assert buckets == sorted(buckets)  # cumulative
    assert after['cerebelum_executions{status="completed"}'] == before['cerebelum_executions{status="completed"}'] + 1
    assert after['cerebelum_executions{status="failed"}'] == before['cerebelum_executions{status="failed"}'] + 1


def test_metric_labels_are_escaped() -> None:
    from cerebelum.entrypoints.http.metrics import _label

    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'

"""Queues end to end (spec section 9): the real `cerebelum` CLI in subprocesses
(`queues set|list|show|delete`, `start/run --queue --priority --concurrency-key`,
`worker --queue`) and the HTTP API in-process (`/api/v1/queues`, the start body)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.e2e.test_cli import CLI, cli, write_json

import cerebelum
from cerebelum.entrypoints.http import create_app

HANDLERS = """
import cerebelum


@cerebelum.handler("echo")
def echo(ctx):
    return ctx.input
"""
FLOW = {"name": "echoer", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "echo"}}}}
API = "/api/v1"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "h.py").write_text(HANDLERS)
    write_json(tmp_path / "flow.json", FLOW)
    return tmp_path


def test_queues_commands_set_list_show_delete(work: Path, tmp_path: Path) -> None:
    """On SQLite only: each command is a process of its own (~1 s); the queue store's SQL on
    PostgreSQL is covered by tests/integration/test_queues.py."""
    sql_url = f"sqlite:///{tmp_path / 'queues.db'}"
    db = ("--db", sql_url)
    limits = ("--concurrency", "4", "--per-key-concurrency", "1", "--rate", "60/m")
    result = cli(work, *db, "queues", "set", "llm", *limits, "--json")
    assert result.code == 0, result.err
    assert result.one_json() == {
        "name": "llm", "concurrency": 4, "per_key_concurrency": 1, "rate": "60/m", "waiting": 0, "running": 0,
        "oldest_waiting": None,
    }  # fmt: skip
    started = cli(work, *db, "--handlers", "h.py", "start", "flow.json", "--queue", "llm", "--priority", "7",
                  "--concurrency-key", "acme", "--json").one_json()  # fmt: skip
    assert (started["queue"], started["priority"], started["concurrency_key"]) == ("llm", 7, "acme")
    status = cli(work, *db, "status", started["execution_id"], "--json").one_json()
    assert (status["queue"], status["priority"], status["concurrency_key"]) == ("llm", 7, "acme")
    shown = cli(work, *db, "queues", "show", "llm", "--json").one_json()
    assert (shown["waiting"], shown["running"]) == (1, 0) and shown["oldest_waiting"] == status["created_at"]
    listed = cli(work, *db, "queues", "list", "--json").one_json()
    assert [q["name"] for q in listed["items"]] == ["default", "llm"]
    table = cli(work, *db, "queues", "list")
    assert table.code == 0 and "llm" in table.out and "60/m" in table.out
    text = cli(work, *db, "queues", "show", "llm")
    assert text.code == 0 and "per_key_concurrency: 1" in text.out
    assert cli(work, *db, "queues", "delete", "llm").code == 0
    after = cli(work, *db, "queues", "show", "llm", "--json").one_json()  # it still has an execution waiting
    assert (after["concurrency"], after["rate"], after["waiting"]) == (None, None, 1)
    gone = cli(work, *db, "queues", "delete", "llm")
    assert gone.code == 2 and "has no settings" in gone.one_error_line()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("queues", "set", "q", "--rate", "lots"), "rate"),
        (("queues", "set", "q", "--concurrency", "0"), "--concurrency"),
        (("queues", "set", "q", "--per-key-concurrency", "0"), "--per-key-concurrency"),
        (("queues", "show", "nowhere"), "name"),
        (("start", "flow.json", "--priority", "0"), "--priority"),
        (("start", "flow.json", "--queue", "no spaces"), "queue"),
        (("worker", "--queue", "bad/name"), "queues"),
    ],
)
def test_bad_queue_input_exits_2_naming_the_field(work: Path, args: tuple[str, ...], named: str) -> None:
    result = cli(work, "--handlers", "h.py", *args)
    assert result.code == 2, (result.out, result.err)
    assert named in result.err and "Traceback" not in result.err


def test_a_definition_with_a_bad_queue_is_invalid(work: Path) -> None:
    write_json(work / "bad.json", {**FLOW, "queue": 12})
    result = cli(work, "--handlers", "h.py", "validate", "bad.json")
    assert result.code == 2 and "queue:" in result.one_error_line()


def test_run_on_a_limited_queue_completes_when_a_slot_is_free(work: Path) -> None:
    assert cli(work, "queues", "set", "small", "--concurrency", "1").code == 0
    result = cli(work, "--handlers", "h.py", "run", "flow.json", "--input", '{"x": 1}', "--queue", "small", "--json")
    assert result.code == 0, result.err
    body = result.one_json()
    assert (body["status"], body["output"], body["queue"]) == ("completed", {"x": 1}, "small")
    assert cli(work, "queues", "show", "small", "--json").one_json()["running"] == 0  # its slot came back


@pytest.fixture
def worker(work: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
        argv = [str(CLI), "--handlers", "h.py", "worker", "--poll-interval", "0.05", *args]
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def test_worker_serves_only_its_queues(work: Path, worker: Any) -> None:
    mine = cli(work, "--handlers", "h.py", "start", "flow.json", "--queue", "mine", "--json").one_json()["execution_id"]
    other = cli(work, "--handlers", "h.py", "start", "flow.json", "--queue", "other", "--json").one_json()["execution_id"]
    worker("--queue", "mine", "--queue", "spare")
    with cerebelum.Engine(f"sqlite:///{work / 'cerebelum.db'}", workers=0) as engine:
        assert engine.wait(mine, timeout=30).status == "completed"
        time.sleep(0.5)  # ten polls of the worker: the other queue's execution must still be untouched
        assert engine.status(other).status == "pending" and engine.status(other).first_claimed_at is None
        everyone = worker()
        assert engine.wait(other, timeout=30).status == "completed"
        everyone.send_signal(signal.SIGTERM)
        assert "every queue" in everyone.communicate(timeout=20)[1].decode()


# -- HTTP ---------------------------------------------------------------------------


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    with cerebelum.Engine(store_url, workers=0) as engine, TestClient(create_app(engine)) as client:
        yield client


def test_http_queue_routes(client: TestClient) -> None:
    put = client.put(f"{API}/queues/llm", json={"concurrency": 2, "rate": "60/m"})
    assert put.status_code == 200, put.text
    assert put.json() | {"oldest_waiting": None} == {
        "name": "llm", "concurrency": 2, "per_key_concurrency": None, "rate": "60/m", "waiting": 0, "running": 0,
        "oldest_waiting": None,
    }  # fmt: skip
    flow = {"name": "later", "entrypoint": "w", "nodes": {"w": {"type": "delay", "config": {"seconds": 0}}}}
    started = client.post(f"{API}/executions", json={"workflow": flow, "queue": "llm", "priority": 1, "concurrency_key": "c"})
    assert started.status_code == 202, started.text
    assert (started.json()["queue"], started.json()["priority"], started.json()["concurrency_key"]) == ("llm", 1, "c")
    got = client.get(f"{API}/executions/{started.json()['execution_id']}").json()
    assert (got["queue"], got["priority"], got["concurrency_key"]) == ("llm", 1, "c")
    one = client.get(f"{API}/queues/llm").json()
    assert (one["waiting"], one["oldest_waiting"]) == (1, got["created_at"])
    assert [q["name"] for q in client.get(f"{API}/queues").json()["items"]] == ["default", "llm"]
    assert client.put(f"{API}/queues/llm", json={"concurrency": None}).json()["rate"] is None  # null = unlimited
    assert client.delete(f"{API}/queues/llm").status_code == 204
    assert client.delete(f"{API}/queues/llm").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths[f"{API}/queues/{{name}}"]) == {"get", "put", "delete"} and "get" in paths[f"{API}/queues"]
    assert "422" in paths[f"{API}/queues/{{name}}"]["put"]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "body", "location"),
    [
        ("put", "/queues/q", {"concurrency": 0}, "body.concurrency"),
        ("put", "/queues/q", {"per_key_concurrency": -1}, "body.per_key_concurrency"),
        ("put", "/queues/q", {"rate": "lots"}, "body.rate"),
        ("put", "/queues/q", {"rate": "0/m"}, "body.rate"),
        ("put", "/queues/q", {"burst": 3}, "body.burst"),
        ("put", "/queues/bad name", {}, "path.name"),
        ("get", "/queues/nowhere", None, "name"),
        ("post", "/executions", {"workflow": "x", "priority": 0}, "body.priority"),
        ("post", "/executions", {"workflow": "x", "priority": 1001}, "body.priority"),
        ("post", "/executions", {"workflow": "x", "queue": "a b"}, "body.queue"),
        ("post", "/executions", {"workflow": "x", "concurrency_key": ""}, "body.concurrency_key"),
    ],
)
def test_http_bad_queue_input_is_422_located(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, location: str
) -> None:
    response: httpx.Response = getattr(client, method)(API + path, **({"json": body} if body is not None else {}))
    assert response.status_code == 422, response.text
    assert location in [d["location"] for d in response.json()["error"]["details"]]


def test_http_a_definition_queue_is_checked(client: TestClient) -> None:
    flow = {"name": "q", "queue": "not ok!", "entrypoint": "w", "nodes": {"w": {"type": "delay", "config": {"seconds": 0}}}}
    response = client.post(f"{API}/executions", json={"workflow": flow})
    assert response.status_code == 422
    assert [d["location"] for d in response.json()["error"]["details"]] == ["queue"]
    assert json.loads(response.text)["error"]["code"] == "invalid_definition"

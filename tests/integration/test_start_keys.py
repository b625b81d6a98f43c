"""Idempotent starts (interaction spec section 5) over memory, SQLite and PostgreSQL,
through the Python API, the CLI (16 processes at once) and HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.helpers import definition, fn, in_threads

import cerebelum
from cerebelum.application.execute_workflow import InvalidInput, KeyReused
from cerebelum.entrypoints.http.app import create_app

CLI = Path(sys.executable).with_name("cerebelum")


@pytest.fixture
def counted(registry: cerebelum.HandlerRegistry) -> list[str]:
    calls: list[str] = []
    lock = threading.Lock()

    def charge(ctx: cerebelum.StepContext) -> dict[str, int]:
        with lock:
            calls.append(ctx.execution_id)
        return {"charged": ctx.input["amount"]}

    registry.register("charge", charge)
    return calls


FLOW = definition("pay", {"charge": fn("charge")})


def test_the_same_key_and_arguments_start_one_execution_whatever_its_status(engine, counted):
    engine.create_workflow(FLOW)
    first = engine.run("pay", {"amount": 5}, key="order-1")
    assert first.status == "completed" and first.key == "order-1"
    again = engine.run("pay", {"amount": 5}, key="order-1")
    queued, created = engine.submit("pay", {"amount": 5}, key="order-1")
    assert again.id == queued.id == first.id and not created
    assert counted == [first.id]  # charged once
    assert [x.id for x in engine.executions("pay")] == [first.id]
    other, created = engine.submit("pay", {"amount": 5}, key="order-2")
    assert created and other.id != first.id and engine.status(other.id).key == "order-2"


def test_the_same_key_with_other_arguments_is_refused(engine, counted):
    engine.create_workflow(FLOW)
    engine.create_workflow(definition("refund", {"charge": fn("charge")}))
    first = engine.execute("pay", {"amount": 5}, key="k")
    with pytest.raises(KeyReused, match=r"already used to start execution .* with other arguments"):
        engine.execute("pay", {"amount": 6}, key="k")
    with pytest.raises(KeyReused):
        engine.execute("refund", {"amount": 5}, key="k")
    assert [x.id for x in engine.executions()] == [first.id]


@pytest.mark.parametrize("key", ["", "k" * 201, 42])
def test_a_key_must_be_1_to_200_characters(engine, counted, key):
    engine.create_workflow(FLOW)
    with pytest.raises(InvalidInput, match="key: must be 1-200 characters"):
        engine.execute("pay", {"amount": 1}, key=key)
    assert engine.executions() == []


def test_concurrent_starts_with_one_key_in_one_process_get_one_execution(engine, counted):
    engine.create_workflow(FLOW)
    ids = in_threads(lambda: engine.execute("pay", {"amount": 3}, key="racy").id, 16)
    assert len(ids) == 16 and len(set(ids)) == 1
    assert len(engine.executions("pay")) == 1


def test_sixteen_cli_processes_starting_one_key_get_one_execution(sql_url, tmp_path):
    store_url = sql_url
    with cerebelum.Engine(store_url, workers=0) as engine:
        engine.create_workflow(FLOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
        command = [str(CLI), "start", "pay", "--input", '{"amount": 7}', "--key", "cli-key", "--db", store_url]
        procs = [
            subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(16)
        ]
        results = [(p.wait(timeout=60), p.stdout.read().strip(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        assert all(code == 0 for code, _, _ in results), results
        assert len({out for _, out, _ in results}) == 1
        [only] = engine.executions("pay")
        assert only.id == results[0][1] and only.key == "cli-key"
        other = subprocess.run([*command[:4], '{"amount": 8}', *command[5:]], env=env, capture_output=True, text=True)
        assert other.returncode == 2 and "with other arguments" in other.stderr


def test_http_answers_202_then_200_for_a_repeated_key_and_409_for_other_arguments(engine, counted):
    engine.create_workflow(FLOW)
    with TestClient(create_app(engine)) as client:
        body = {"workflow": "pay", "input": {"amount": 2}, "key": "web-1"}
        first = client.post("/api/v1/executions", json=body)
        again = client.post("/api/v1/executions", json=body)
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["execution_id"] == again.json()["execution_id"] and again.json()["key"] == "web-1"
        clash = client.post("/api/v1/executions", json={**body, "input": {"amount": 3}})
        assert clash.status_code == 409 and "other arguments" in clash.json()["error"]["message"]
        for bad in ("", "k" * 201):
            assert client.post("/api/v1/executions", json={**body, "key": bad}).status_code == 422
    assert len(engine.executions("pay")) == 1


def test_a_key_tells_true_from_1(engine, counted):
    engine.create_workflow(FLOW)
    engine.execute("pay", {"amount": 1}, key="typed")
    with pytest.raises(KeyReused):
        engine.execute("pay", {"amount": True}, key="typed")
    with pytest.raises(KeyReused):
        engine.execute("pay", {"amount": 1.0}, key="typed")


def test_a_definition_started_with_a_used_key_is_not_remembered_as_stored(engine, registry):
    """The repeat's own document was never stored: it must not stand for a version later stored."""
    for name in ("a", "b", "c"):
        registry.register(name, lambda ctx, _n=name: _n)
    doc = {"name": "w", "entrypoint": "s", "nodes": {"s": {"type": "function", "config": {"handler": "a"}}}}
    first = engine.run(doc, {}, key="k")
    again = engine.run({**doc, "nodes": {"s": {"type": "function", "config": {"handler": "b"}}}}, {}, key="k")
    assert again.id == first.id and first.output == "a"
    stored = engine.create_workflow({**doc, "nodes": {"s": {"type": "function", "config": {"handler": "c"}}}})
    assert stored.version == 2
    assert engine.run("w", {}).output == "c"

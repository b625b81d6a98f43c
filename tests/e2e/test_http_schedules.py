"""`/api/v1/schedules` through the real app (FastAPI TestClient) on each backend:
answers, located errors, auth and cross-site refusals, the OpenAPI document."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers import definition, fn

import cerebelum
from cerebelum.entrypoints.http import create_app

API = "/api/v1/schedules"
NIGHTLY = {"name": "nightly", "workflow": "report", "cron": "0 3 * * *", "timezone": "Europe/Paris", "input": {"day": 1}}


@pytest.fixture
def engine(store_url: str, registry: cerebelum.HandlerRegistry) -> Iterator[cerebelum.Engine]:
    registry.register("report", lambda ctx: {})
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(definition("report", {"make": fn("report")}))
        yield engine


@pytest.fixture
def client(engine: cerebelum.Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as client:
        yield client


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert "Traceback" not in response.text
    return error


def test_create_read_pause_resume_trigger_delete(client, engine):
    created = client.post(API, json=NIGHTLY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["state"], body["overlap"], body["catchup"]) == ("nightly", "active", "skip", "latest")
    assert body["next_fire"] == body["next_fires"][0] and len(body["next_fires"]) == 5 and body["recent"] == []
    assert problem(client.post(API, json=NIGHTLY), 409)["message"] == "schedule 'nightly' already exists"
    assert [s["name"] for s in client.get(API).json()["items"]] == ["nightly"]
    assert client.get(f"{API}/nightly").json()["cron"] == "0 3 * * *"
    paused = client.post(f"{API}/nightly/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "paused" and paused.json()["next_fires"] == []
    triggered = client.post(f"{API}/nightly/trigger")
    assert triggered.status_code == 202, triggered.text
    execution = triggered.json()
    assert execution["schedule"]["name"] == "nightly" and execution["input"] == {"day": 1}
    assert client.get(f"/api/v1/executions/{execution['execution_id']}").json()["schedule"] == execution["schedule"]
    resumed = client.post(f"{API}/nightly/resume").json()
    assert resumed["state"] == "active" and resumed["recent"][0]["outcome"] == "triggered"
    assert client.delete(f"{API}/nightly").status_code == 204
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"), ("POST", "/trigger")):
        assert problem(client.request(method, f"{API}/nightly{path}"), 404)["code"] == "not_found"
    assert engine.status(execution["execution_id"]).schedule_name == "nightly"  # its executions stay


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"cron": "61 * * * *"}, "body.cron"),
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"workflow": "nope"}, "body.workflow"),
        ({"version": 7}, "body.version"),
        ({"every_s": 5}, "body.cron"),  # both cron and every_s
        ({"cron": None, "every_s": 0}, "body.every_s"),
        ({"cron": None, "every_s": 2.5}, "body.every_s"),
        ({"overlap": "queue"}, "body.overlap"),
        ({"name": "no spaces"}, "body.name"),
        ({"input": {"n": 2**70}}, "body.input"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_bad_schedules_are_422_located(client, change, location):
    document = {k: v for k, v in {**NIGHTLY, **change}.items() if v is not None}
    error = problem(client.post(API, json=document), 422)
    assert location in [d["location"] for d in error["details"]], error
    assert client.get(API).json()["items"] == []


def test_a_body_that_is_not_json_is_refused(client):
    assert problem(client.post(API, content=b"name: x", headers={"content-type": "text/plain"}), 415)
    assert problem(client.post(API, content=b"{", headers={"content-type": "application/json"}), 400)


def test_state_changing_routes_need_a_token_and_the_same_origin(engine):
    with TestClient(create_app(engine, tokens=frozenset({"s3cret"}))) as client:
        assert client.post(API, json=NIGHTLY).status_code == 401
        assert client.get(API).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post(API, json=NIGHTLY, headers={**auth, "Origin": "https://evil.example"}).status_code == 403
        assert client.post(API, json=NIGHTLY, headers=auth).status_code == 201
        assert client.post(f"{API}/nightly/trigger", headers={**auth, "Origin": "https://evil.example"}).status_code == 403
        assert client.delete(f"{API}/nightly", headers={**auth, "Origin": "https://evil.example"}).status_code == 403
        assert client.get(f"{API}/nightly", headers=auth).status_code == 200


def test_the_routes_and_their_errors_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths[API]) == {"get", "post"}
    assert set(paths[f"{API}/{{name}}"]) == {"get", "delete"}
    for action in ("pause", "resume", "trigger"):
        assert set(paths[f"{API}/{{name}}/{action}"]["post"]["responses"]) >= {"404", "422", "503"}
    assert set(paths[API]["post"]["responses"]) >= {"201", "409", "415", "422"}
    assert "schedule" in client.get("/openapi.json").json()["components"]["schemas"]["ExecutionOut"]["properties"]


def test_a_served_engine_fires_schedules_and_counts_the_ticks(store_url, registry):
    registry.register("report", lambda ctx: {})
    with cerebelum.Engine(store_url, handlers=registry, workers=1) as engine:
        engine.create_workflow(definition("report", {"make": fn("report")}))
        with TestClient(create_app(engine, run_workers=True)) as client:
            assert client.post(API, json={"name": "fast", "workflow": "report", "every_s": 1}).status_code == 201
            deadline = time.monotonic() + 15
            started = 0
            while time.monotonic() < deadline and started < 1:
                time.sleep(0.2)
                metrics = client.get("/metrics").text
                started = int(re.search(r"^cerebelum_schedule_ticks_started_total (\d+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
            assert started >= 1
            assert "cerebelum_schedule_ticks_skipped_total" in metrics and "cerebelum_schedule_ticks_late_total" in metrics
            recent = client.get(f"{API}/fast").json()["recent"]
            assert "started" in [t["outcome"] for t in recent]

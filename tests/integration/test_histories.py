"""Portable histories (spec section 7): export from one database, import into
another (SQLite <-> PostgreSQL, memory -> SQLite), refusals that write nothing,
and replaying a bundle with no database."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import empty_pg

import cerebelum
from cerebelum.application.histories import bundle_from_text, export_history, import_history, replay_history
from cerebelum.bootstrap import offline_adapters
from cerebelum.domain.errors import Conflict, NotFound, ValidationError
from cerebelum.domain.history import HistoryBundle

FLOW: dict[str, Any] = {
    "name": "travel",
    "entrypoint": "a",
    "nodes": {
        "a": {"type": "function", "config": {"handler": "pick"}},
        "b": {"type": "function", "config": {"handler": "pick"}},
    },
    "edges": [{"from": "a", "to": "b"}],
    "output": "results.b",
}


def pick(ctx: cerebelum.StepContext) -> dict[str, Any]:
    return {"n": ctx.data.get("n", 0) + ctx.randint(1, 100), "at": ctx.now().isoformat()}


@pytest.fixture(params=["sqlite->postgresql", "postgresql->sqlite", "memory->sqlite"])
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    def url(kind: str, name: str) -> str:
        if kind == "memory":
            return "memory://"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / name}"
        pg: str = request.getfixturevalue("pg_url")
        empty_pg(pg)
        return pg

    source, target = request.param.split("->")
    return url(source, "source.db"), url(target, "target.db")


def refuse(ctx: cerebelum.StepContext) -> None:
    raise cerebelum.NonRetryable(f"declined {ctx.data['n']}")


@pytest.fixture
def handlers() -> cerebelum.HandlerRegistry:
    registry = cerebelum.HandlerRegistry()
    registry.register("pick", pick)
    registry.register("refuse", refuse)
    return registry


Pair = tuple[cerebelum.Engine, cerebelum.Engine]


@pytest.fixture
def source_and_target(two_urls: tuple[str, str], handlers: cerebelum.HandlerRegistry) -> Iterator[Pair]:
    with (
        cerebelum.Engine(two_urls[0], workers=0, handlers=handlers) as source,
        cerebelum.Engine(two_urls[1], workers=0, handlers=handlers) as target,
    ):
        yield source, target


def _travel(source: cerebelum.Engine, execution_id: str) -> HistoryBundle:
    """Export, write as text, read back: what a file between two machines does."""
    document = export_history(source.store, execution_id).to_json(source.clock.now(), "test")
    return bundle_from_text(json.dumps(document), "bundle.json")


def test_export_then_import_into_another_database_keeps_status_and_events(
    source_and_target: Pair,
) -> None:
    source, target = source_and_target
    done = source.run(FLOW, {"n": 1})
    failed_flow = {**FLOW, "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "refuse"}}}}
    failed = source.run(failed_flow, {"n": 2})
    assert (done.status, failed.status) == ("completed", "failed")
    for execution in (done, failed):
        imported = import_history(target.store, target.ids, target.compiler, _travel(source, execution.id))
        assert imported.id == execution.id
        assert target.status(execution.id).to_json() == source.status(execution.id).to_json()
        assert [(e.id, e.to_json()) for e in target.events(execution.id)] == [
            (e.id, e.to_json()) for e in source.events(execution.id)
        ]
        assert target.replay(execution.id, strict=True, from_start=True).identical
    # the version it ran came along; the second bundle's version 2 too, the first one reused
    assert [w.version for w in target.workflow_versions("travel")] == [1, 2]
    assert target.get_workflow("travel", 1).digest == source.get_workflow("travel", 1).digest


def test_import_refuses_an_existing_id_and_another_definition_under_the_same_version(
    source_and_target: Pair,
) -> None:
    source, target = source_and_target
    execution = source.run(FLOW, {"n": 1})
    bundle = _travel(source, execution.id)
    import_history(target.store, target.ids, target.compiler, bundle)
    with pytest.raises(Conflict, match="already exists"):
        import_history(target.store, target.ids, target.compiler, bundle)
    assert len(target.events(execution.id)) == execution.last_sequence + 1  # the log is untouched

    other_flow = {**FLOW, "output": "results.a"}  # travel v1 elsewhere means something else
    with cerebelum.Engine("memory://", workers=0, handlers=source.handlers) as elsewhere:
        other = elsewhere.run(other_flow, {"n": 3})
        foreign = _travel(elsewhere, other.id)
    with pytest.raises(Conflict, match="another definition"):
        import_history(target.store, target.ids, target.compiler, foreign)
    assert other.id not in {e.id for e in target.executions(limit=100)}  # nothing written


def _document(engine: cerebelum.Engine, execution_id: str) -> dict[str, Any]:
    return export_history(engine.store, execution_id).to_json(engine.clock.now(), "test")


def _problems(document: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        bundle_from_text(json.dumps(document), "bundle.json")
    return [str(p) for p in caught.value.problems]


def test_corrupted_or_truncated_bundles_are_refused_with_located_problems(handlers: cerebelum.HandlerRegistry) -> None:
    with cerebelum.Engine("memory://", workers=0, handlers=handlers) as engine:
        good = _document(engine, engine.run(FLOW, {"n": 1}).id)
    text = json.dumps(good)
    with pytest.raises(ValidationError) as caught:
        bundle_from_text(text[: len(text) // 2], "bundle.json")
    assert "truncated" in str(caught.value)

    edited = copy.deepcopy(good)
    edited["workflow"]["definition"]["entrypoint"] = "b"
    assert any(p.startswith("workflow.digest: does not match") for p in _problems(edited))

    gap = copy.deepcopy(good)
    del gap["events"][2]
    found = _problems(gap)
    assert any(p.startswith("events.2.sequence: must be 2") for p in found)
    assert any(p.startswith("events: ") and "truncated" in p for p in found)

    broken = copy.deepcopy(good)
    broken["events"][1]["payload"] = "text"
    broken["events"][3]["id"] = "x" * 40
    broken["execution"]["status"] = "done"
    del broken["execution"]["seed"]
    found = _problems(broken)
    for location in ("events.1.payload", "events.3.id", "execution.status", "execution.seed"):
        assert any(p.startswith(location + ":") for p in found), (location, found)

    assert _problems({"format": "something else"})[0].startswith("format:")
    assert _problems([1, 2])[0].startswith("bundle:")
    newer = {**good, "format_version": 99}
    assert _problems(newer)[0].startswith("format_version: 99 is not supported")
    odd = copy.deepcopy(good)
    odd["execution"]["seed"] = 2**70
    odd["execution"]["timeout_s"] = float("nan")
    found = _problems(odd)
    assert any(p.startswith("execution.seed:") for p in found) and any(p.startswith("execution.timeout_s:") for p in found)
    surrogate = copy.deepcopy(good)
    surrogate["execution"]["input"] = {"bad": "\ud800"}
    assert any(p.startswith("execution.input.bad:") for p in _problems(surrogate))


def test_import_refuses_an_execution_that_has_not_finished_and_an_invalid_definition(
    handlers: cerebelum.HandlerRegistry, tmp_path: Path
) -> None:
    with cerebelum.Engine("memory://", workers=0, handlers=handlers) as engine:
        pending = engine.execute(FLOW, {"n": 1})
        unfinished = bundle_from_text(json.dumps(_document(engine, pending.id)), "b.json")
        finished = _document(engine, engine.run(FLOW, {"n": 2}).id)
    invalid = copy.deepcopy(finished)
    invalid["workflow"]["definition"]["nodes"]["b"]["type"] = "nonsense"
    from cerebelum.domain.workflow import content_digest

    invalid["workflow"]["digest"] = content_digest(invalid["workflow"]["definition"])
    with cerebelum.Engine(f"sqlite:///{tmp_path / 't.db'}", workers=0) as target:
        with pytest.raises(ValidationError) as caught:
            import_history(target.store, target.ids, target.compiler, unfinished)
        assert caught.value.problems[0].location == "execution.status"
        with pytest.raises(ValidationError) as caught:
            import_history(target.store, target.ids, target.compiler, bundle_from_text(json.dumps(invalid), "b.json"))
        assert caught.value.problems[0].location.startswith("workflow.definition.nodes.b")
        assert target.executions(limit=10) == [] and target.workflows() == []


def test_a_bundle_replays_without_a_database_and_a_changed_handler_diverges(handlers: cerebelum.HandlerRegistry) -> None:
    with cerebelum.Engine("memory://", workers=0, handlers=handlers) as engine:
        bundle = bundle_from_text(json.dumps(_document(engine, engine.run(FLOW, {"n": 1}).id)), "b.json")
    compiler, clock, scope = offline_adapters()

    def replay(registry: cerebelum.HandlerRegistry, strict: bool = True) -> Any:
        return asyncio.run(replay_history(bundle, compiler, strict=strict, handlers=registry, clock=clock, step_scope=scope))

    assert replay(handlers).identical
    changed = cerebelum.HandlerRegistry()
    changed.register("pick", lambda ctx: {"n": ctx.data.get("n", 0) + ctx.randint(1, 100) + 1, "at": ctx.now().isoformat()})
    report = replay(changed)
    assert not report.identical
    assert report.divergence is not None and report.divergence.node_id == "a"
    assert "different output" in report.divergence.reason
    assert replay(changed, strict=False).identical  # without strict, handlers are not called again


def test_the_http_export_route_answers_the_bundle_and_is_in_the_openapi_document(
    handlers: cerebelum.HandlerRegistry, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from cerebelum.entrypoints.http import create_app

    with cerebelum.Engine(f"sqlite:///{tmp_path / 'h.db'}", workers=0, handlers=handlers) as engine:
        execution = engine.run(FLOW, {"n": 1})
        app = create_app(engine)
        with TestClient(app) as client:
            answer = client.get(f"/api/v1/executions/{execution.id}/export")
            assert answer.status_code == 200
            assert execution.id in answer.headers["content-disposition"]
            bundle = bundle_from_text(answer.text, "http")
            assert bundle.execution.to_json() == engine.status(execution.id).to_json()  # times to the millisecond
            assert [(e.id, e.to_json()) for e in bundle.events] == [(e.id, e.to_json()) for e in engine.events(execution.id)]
            missing = client.get("/api/v1/executions/exec-nope/export")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        operation = app.openapi()["paths"]["/api/v1/executions/{execution_id}/export"]["get"]
        assert {"200", "404", "503"} <= operation["responses"].keys()
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/HistoryBundleOut")


SIGNALLED: dict[str, Any] = {
    "name": "signalled",
    "entrypoint": "a",
    "nodes": {
        "a": {"type": "function", "config": {"handler": "pick"}},
        "approve": {"type": "wait", "config": {"signal": "approve"}},
        "b": {"type": "function", "config": {"handler": "refuse"}},
    },
    "edges": [{"from": "a", "to": "approve"}, {"from": "approve", "to": "b"}],
}


def test_signals_deadlines_and_forks_travel_and_are_purged_with_the_execution(
    two_urls: tuple[str, str], handlers: cerebelum.HandlerRegistry
) -> None:
    """A signalled, failed execution with a deadline, and its fork: both travel with
    what their rows say; a purge then takes the source's signal inbox with it."""
    from datetime import timedelta

    from cerebelum.application.retention import purge_executions

    with (
        cerebelum.Engine(two_urls[0], workers=2, handlers=handlers) as source,
        cerebelum.Engine(two_urls[1], workers=0, handlers=handlers) as target,
    ):
        started = source.execute(SIGNALLED, {"n": 1}, timeout_s=600)
        source.signal(started.id, "approve", {"by": "ana"}, key="once")
        failed = source.wait(started.id, timeout=30)
        assert failed.status == "failed" and failed.timeout_s == 600
        fork = source.wait(source.fork(failed.id).id, timeout=30)
        assert fork.forked_from == failed.id
        for execution in (failed, fork):
            import_history(target.store, target.ids, target.compiler, _travel(source, execution.id))
            assert target.status(execution.id).to_json() == source.status(execution.id).to_json()
            assert target.status(execution.id).signals_sent == 1
            assert target.replay(execution.id, strict=True, from_start=True).identical
        assert _inbox(source, failed.id) == 1
        purged = purge_executions(source.store.executions, source.clock, timedelta(0))
        assert purged.count == 2 and source.executions() == []
        assert _inbox(source, failed.id) == 0  # its signals went with it
        with pytest.raises(NotFound):
            source.signal(failed.id, "approve", {"by": "bo"})


def _inbox(engine: cerebelum.Engine, execution_id: str) -> int:
    """Signals kept for the execution, read from the store itself."""
    from sqlalchemy import func, select

    from cerebelum.infrastructure.sql import schema

    sql_engine = getattr(engine.store, "engine", None)
    if sql_engine is None:
        return len(engine.store.signals._rows.get(execution_id, []))  # type: ignore[attr-defined]
    with sql_engine.connect() as connection:
        query = select(func.count()).select_from(schema.signals).where(schema.signals.c.execution_id == execution_id)
        return int(connection.execute(query).scalar_one())

"""Code versions and safe deploys (interaction spec section 10): two engines with
different code versions on one store, over memory, SQLite and PostgreSQL.

An execution is stopped between nodes by a pause its first handler requests
(so the next node is left for whoever continues it), resumed, and then:
`versioning: upgrade` lets the other version continue it after one
`code_version_changed`; `pinned` is never claimed by the other version until
`executions upgrade` moves it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.helpers import chain, check_log, definition, fn, of_type

import cerebelum
from cerebelum.application.code_versions import upgrade_execution, upgrade_executions
from cerebelum.domain.errors import IllegalTransition, NotFound
from cerebelum.entrypoints.http.metrics import Metrics

FAST = {"poll_interval": 0.05, "lease_ttl": 5.0}


@pytest.fixture
def engines(store_url: str, registry: cerebelum.HandlerRegistry) -> Iterator[Callable[..., cerebelum.Engine]]:
    """engines(code_version, **options) on the test's store (memory: the first one's store)."""
    made: list[cerebelum.Engine] = []

    def make(code_version: str, **options: Any) -> cerebelum.Engine:
        if store_url == "memory://" and made:
            options.setdefault("store", made[0].store)
        engine = cerebelum.Engine(store_url, code_version=code_version, **{**FAST, "workers": 0, "handlers": registry, **options})
        made.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in reversed(made):
            engine.close()


@pytest.fixture
def gated(registry: cerebelum.HandlerRegistry) -> Callable[[cerebelum.Engine, str], dict[str, Any]]:
    """gated(engine, versioning): a workflow whose first node asks for a pause of its own execution."""
    holder: dict[str, cerebelum.Engine] = {}

    def gate(ctx: cerebelum.StepContext) -> Any:
        holder["engine"].store.queue.request(ctx.execution_id, "pause")
        return {"n": 1}

    registry.register("gate", gate)
    registry.register("step", lambda ctx: {"n": ctx.data["n"] + 1})

    def make(engine: cerebelum.Engine, versioning: str) -> dict[str, Any]:
        holder["engine"] = engine
        nodes = {"a": fn("gate"), "b": fn("step"), "c": fn("step")}
        return definition(f"deploy_{versioning}", nodes, chain("a", "b", "c"), versioning=versioning)

    return make


def stopped_between_nodes(engine: cerebelum.Engine, document: dict[str, Any]) -> cerebelum.Execution:
    """Run `a` with `engine`, then resume: running, no lease, `b` still to run."""
    paused = engine.run(document, {})
    assert paused.status == "paused", paused.error
    assert paused.code_version == engine.host.code_version()
    resumed = engine.resume(paused.id)
    assert resumed.status == "running"
    return resumed


def upgrade(engine: cerebelum.Engine, execution_id: str) -> cerebelum.Execution:
    async def go() -> cerebelum.Execution:
        try:
            target = engine.host.code_version()
            assert target is not None
            return await upgrade_execution(engine.host, execution_id, target)
        finally:
            await engine.close_async()

    return asyncio.run(go())


def test_a_fresh_run_records_its_code_version_on_the_start_every_event_and_the_row(engines, gated):
    v1 = engines("v1")
    done = v1.run(definition("plain", {"a": fn("step")}), {"n": 0})
    assert done.status == "completed"
    log = check_log(v1, done)
    assert log[0].payload["code_version"] == "v1"
    assert {e.code_version for e in log} == {"v1"}
    assert done.to_json()["code_version"] == "v1"
    assert (done.versioning, done.waiting_for_code_version) == ("upgrade", None)
    assert v1.status(done.id).code_version == "v1"


def test_a_start_that_only_enqueues_fixes_no_code_version(engines, gated):
    v1, v2 = engines("v1"), engines("v2")
    queued = v1.execute(definition("queued", {"a": fn("step")}, versioning="pinned"), {"n": 0})
    assert (queued.code_version, queued.versioning) == (None, "pinned")
    v2.start_worker(1)  # the first process that runs it fixes it, even a pinned one
    done = v2.wait(queued.id, timeout=20)
    assert (done.status, done.code_version) == ("completed", "v2")
    log = v2.events(done.id)
    assert log[0].payload["code_version"] == "v2"
    assert not of_type(log, "code_version_changed")


def test_upgrade_another_code_version_continues_after_one_code_version_changed(engines, gated):
    v1, v2 = engines("v1"), engines("v2")
    execution = stopped_between_nodes(v1, gated(v1, "upgrade"))
    metrics = Metrics(v2)
    metrics.start()
    v2.start_worker(1)
    done = v2.wait(execution.id, timeout=20)
    scrape = asyncio.run(metrics.render())
    assert 'cerebelum_code_version_changes_total{from="v1",to="v2",reason="continued"} 1' in scrape
    assert done.status == "completed", done.error
    assert done.output == {"n": 3}
    assert done.code_version == "v2"
    log = check_log(v2, done)
    changed = of_type(log, "code_version_changed")
    assert [c.payload for c in changed] == [{"from": "v1", "to": "v2", "reason": "continued"}]
    first_run_by_v2 = next(e for e in log if e.type == "node_completed" and e.node_id == "b")
    assert changed[0].sequence < first_run_by_v2.sequence
    assert [e.code_version for e in of_type(log, "node_completed")] == ["v1", "v2", "v2"]
    assert of_type(log, "node_completed", "a")[0].code_version == "v1"
    assert v2.replay(done.id, from_start=True).identical  # the change is applied where it is met, never a divergence


def test_pinned_is_left_to_its_own_code_version_until_executions_upgrade(engines, gated):
    v1, v2 = engines("v1"), engines("v2")
    execution = stopped_between_nodes(v1, gated(v1, "pinned"))
    row = v2.status(execution.id)
    assert (row.code_version, row.versioning, row.waiting_for_code_version) == ("v1", "pinned", "v1")
    assert v2.store.queue.per_code_version() == {("v1", "pinned"): 1}
    metrics = Metrics(v2)
    metrics.start()
    assert 'cerebelum_executions_by_code_version{code_version="v1",versioning="pinned"} 1' in asyncio.run(metrics.render())

    assert v2.store.queue.claim("v2-worker", 10, 5.0, "v2") == []  # the other version never takes it
    assert v2.store.queue.claim("unversioned", 10, 5.0) == []
    taken = v1.store.queue.claim("v1-worker", 10, 5.0, "v1")  # its own does
    assert [x.id for x, _ in taken] == [execution.id]
    v1.store.queue.release(taken[0][1])

    v2.start_worker(1)  # a pool of the other version idles beside it
    with pytest.raises(TimeoutError):
        v2.wait(execution.id, timeout=0.5)
    assert v2.status(execution.id).last_sequence == row.last_sequence  # untouched

    moved = upgrade(v2, execution.id)
    assert (moved.code_version, moved.waiting_for_code_version) == ("v2", "v2")
    done = v2.wait(execution.id, timeout=20)
    assert (done.status, done.output, done.code_version) == ("completed", {"n": 3}, "v2")
    log = check_log(v2, done)
    assert [c.payload for c in of_type(log, "code_version_changed")] == [{"from": "v1", "to": "v2", "reason": "upgrade"}]
    assert {e.code_version for e in of_type(log, "node_completed") if e.node_id != "a"} == {"v2"}
    assert v2.store.queue.per_code_version() == {}
    scrape = asyncio.run(metrics.render())
    assert 'cerebelum_code_version_changes_total{from="v1",to="v2",reason="upgrade"} 1' in scrape
    assert "cerebelum_executions_by_code_version{" not in scrape


def test_executions_upgrade_refuses_unknown_and_ended_executions_and_moves_many(engines, gated):
    v1, v2 = engines("v1"), engines("v2")
    with pytest.raises(NotFound):
        upgrade(v2, "exec-nope")
    ended = v1.run(definition("ended", {"a": fn("step")}), {"n": 0})
    with pytest.raises(IllegalTransition):
        upgrade(v2, ended.id)

    document = gated(v1, "pinned")
    first = stopped_between_nodes(v1, document)
    second = stopped_between_nodes(v1, document)
    assert upgrade(v1, first.id).code_version == "v1"  # already on the caller's version: nothing recorded

    async def many() -> list[cerebelum.Execution]:
        try:
            return await upgrade_executions(v2.host, document["name"], "v1", "v2")
        finally:
            await v2.close_async()

    moved = asyncio.run(many())
    assert sorted(x.id for x in moved) == sorted([first.id, second.id])
    assert {v2.status(x.id).code_version for x in moved} == {"v2"}
    assert all(len(of_type(v2.events(x.id), "code_version_changed")) == 1 for x in moved)


def test_strict_replay_names_the_code_version_that_recorded_the_divergent_event(store_url, engines):
    old = cerebelum.HandlerRegistry()
    old.register("price", lambda ctx: {"total": 10})
    new = cerebelum.HandlerRegistry()
    new.register("price", lambda ctx: {"total": 12})
    v1 = engines("v1", handlers=old)
    done = v1.run(definition("priced", {"a": fn("price")}), {})
    options: dict[str, Any] = {"store": v1.store} if store_url == "memory://" else {}
    with cerebelum.Engine(store_url, handlers=new, code_version="v2", workers=0, **options) as v2:
        report = v2.replay(done.id, strict=True)
    assert not report.identical
    assert report.divergence is not None
    assert report.divergence.code_version == "v1"
    assert report.to_json()["divergence"]["code_version"] == "v1"
    assert "different output" in report.divergence.reason

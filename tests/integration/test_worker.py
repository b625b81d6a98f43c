"""The in-process worker pool, leases and fencing, graceful stop and parking,
pause/resume/cancel, over the in-memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from tests.conftest import empty_pg
from tests.helpers import chain, check_log, definition, fn, of_type

import cerebelum
from cerebelum.application.execute_workflow import start_execution
from cerebelum.application.worker import LeaseKeeper, supervise
from cerebelum.domain.errors import IllegalTransition, LeaseLost
from cerebelum.domain.events import Event, parse_rfc3339
from cerebelum.domain.execution import Execution, Lease
from cerebelum.infrastructure.sql.database import QUEUE_CHANNEL

FAST = {"poll_interval": 0.05, "lease_ttl": 5.0}


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return value


class Calls:
    """Counts handler runs by node path (handlers run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}

    def note(self, ctx: cerebelum.StepContext) -> None:
        with self.lock:
            self.runs[ctx.node_id] += 1
            self.keys.setdefault(ctx.node_id, set()).add(ctx.idempotency_key)


@pytest.fixture
def calls(registry: cerebelum.HandlerRegistry) -> Calls:
    calls = Calls()

    def step(ctx: cerebelum.StepContext) -> Any:
        calls.note(ctx)
        return {"node": ctx.node_id, "n": (ctx.data or {}).get("n", 0) + 1 if isinstance(ctx.data, dict) else 1}

    def boom(ctx: cerebelum.StepContext) -> Any:
        calls.note(ctx)
        raise RuntimeError("kaboom")

    registry.register("step", step)
    registry.register("boom", boom)
    return calls


@pytest.fixture
def engines(store_url: str, registry: cerebelum.HandlerRegistry) -> Iterator[Callable[..., cerebelum.Engine]]:
    """engines(**options): Engines on the test's store, closed at teardown. On
    memory:// they share the first one's store (a second MemoryStore would be empty)."""
    made: list[cerebelum.Engine] = []

    def make(**options: Any) -> cerebelum.Engine:
        if store_url == "memory://" and made:
            options.setdefault("store", made[0].store)
        engine = cerebelum.Engine(store_url, handlers=registry, **{**FAST, **options})
        made.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in reversed(made):
            engine.close()


# -- the pool ---------------------------------------------------------------------


def test_execute_is_carried_out_by_the_in_process_pool(engines, calls):
    engine = engines(workers=4)
    engine.create_workflow(definition("pooled", {"a": fn("step"), "b": fn("step"), "c": fn("step")}, chain("a", "b", "c")))
    pending = [engine.execute("pooled", {"i": i}) for i in range(12)]
    assert {e.status for e in pending} == {"pending"}
    for execution in pending:
        done = engine.wait(execution.id, timeout=30)
        assert done.status == "completed", done.error
        assert done.output == {"node": "c", "n": 3}
        log = check_log(engine, done)
        assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b", "c"]
    assert calls.runs == {"a": 12, "b": 12, "c": 12}
    counts = engine.store.queue.counts()
    assert (counts["completed"], counts["leased"], counts["parked"]) == (12, 0, 0)


def test_wait_returns_terminal_executions_and_times_out_on_others(engines, calls):
    engine = engines(workers=2)
    ok = engine.execute(definition("fine", {"a": fn("step")}))
    bad = engine.execute(definition("broken", {"a": fn("boom")}))
    assert engine.wait(ok.id, timeout=20).status == "completed"
    failed = engine.wait(bad.id, timeout=20)
    assert failed.status == "failed"
    assert failed.error["kind"] == "handler_error"
    assert engine.wait(ok.id, timeout=1).status == "completed"  # already terminal: at once

    engine.close()  # no pool runs from here on
    idle = engines(workers=0)  # enqueues only
    queued = idle.execute("fine", {})
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        idle.wait(queued.id, timeout=0.5)
    assert time.monotonic() - started < 5
    assert idle.status(queued.id).status == "pending"


def test_pool_survives_failing_handlers_and_an_execution_whose_workflow_is_missing(engines, calls, caplog):
    caplog.set_level(logging.ERROR, logger="cerebelum.worker")
    engine = engines(workers=2, lease_ttl=0.5)
    ghost = Execution(
        id=f"exec-{uuid.uuid4()}",
        workflow="no_such_workflow",
        version=1,
        status="pending",
        input={},
        seed=1,
        virtual_time=False,
        created_at=datetime.now(UTC),
    )
    engine.store.executions.create(ghost)
    failing = [engine.execute(definition("boom", {"a": fn("boom")})) for _ in range(3)]
    fine = engine.execute(definition("fine", {"a": fn("step"), "b": fn("step")}, chain("a", "b")))
    for execution in failing:
        assert engine.wait(execution.id, timeout=20).status == "failed"
    assert engine.wait(fine.id, timeout=20).status == "completed"
    # Set aside, paused with the reason (before: dropped and claimed again after every lease lapse, forever).
    paused = until(lambda: (row := engine.status(ghost.id)).status == "paused" and row, 10, "the ghost to be paused")
    assert paused.error["kind"] == "unloadable"
    assert "unknown workflow 'no_such_workflow' version 1" in paused.error["message"] and ghost.id in paused.error["message"]
    time.sleep(1.2)  # two lease lifetimes: it is not claimed again
    later = engine.execute("fine", {})
    assert engine.wait(later.id, timeout=20).status == "completed"
    log = engine.events(ghost.id)
    assert [e.type for e in log] == ["execution_started", "execution_paused"]
    assert log[1].payload == {"reason": "unloadable", "error": paused.error}
    assert engine.status(ghost.id).status == "paused"
    assert caplog.text.count(ghost.id) == 1  # logged once, when it was paused
    assert calls.runs["a"] == 3 + 2


# -- graceful stop and parking -------------------------------------------------------


def test_graceful_close_parks_a_timer_and_another_engine_finishes_it(engines, calls):
    first = engines(workers=2, park_after=0.5)
    doc = definition("later", {"a": fn("step"), "wait": {"type": "delay", "config": {"seconds": 1.5}}, "b": fn("step")})
    doc["edges"] = chain("a", "wait", "b")
    execution = first.execute(doc, {})

    def parked() -> bool:
        counts = first.store.queue.counts()
        return bool(of_type(first.events(execution.id), "timer_started")) and counts["parked"] == 1 and counts["leased"] == 0

    until(parked, 10, "the execution to park on its timer")
    first.close()
    second = engines(workers=2)
    counts = second.store.queue.counts()
    assert (counts["parked"], counts["leased"], counts["running"]) == (1, 0, 1)
    second.start_worker()
    done = second.wait(execution.id, timeout=20)
    assert done.status == "completed", done.error
    log = check_log(second, done)
    [started] = of_type(log, "timer_started", "wait")
    [fired] = of_type(log, "timer_fired", "wait")
    assert fired.timestamp >= parse_rfc3339(started.payload["fires_at"])
    assert calls.runs == {"a": 1, "b": 1}


def test_graceful_close_finishes_the_in_flight_handler_and_hands_the_execution_back(engines, calls, gate):
    entered, release = gate
    first = engines(workers=1)
    execution = first.execute(definition("handback", {"a": fn("gate"), "b": fn("step")}, chain("a", "b")), {})
    assert entered.wait(10)
    threading.Timer(0.3, release.set).start()
    first.close()  # waits for the handler, records it, releases the lease
    log = first.store.events.read(execution.id)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a"]
    counts = first.store.queue.counts()
    assert (counts["leased"], counts["parked"]) == (0, 0)

    second = engines(workers=1)
    second.start_worker()
    done = second.wait(execution.id, timeout=20)
    assert done.status == "completed"
    log = check_log(second, done)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b"]
    assert calls.runs == {"a": 1, "b": 1}  # the finished handler is not run again


# -- leases and fencing ---------------------------------------------------------------


def _event(execution: Execution, sequence: int) -> Event:
    payload = {"workflow": execution.workflow, "version": execution.version, "input": execution.input}
    return Event(str(uuid.uuid4()), execution.id, sequence, "execution_started", None, payload, datetime.now(UTC))


def _take_over(engine: cerebelum.Engine, execution_id: str) -> tuple[Lease, Lease]:
    """A lease that lapses, then another worker's claim: (stale, fresh)."""
    queue = engine.store.queue
    stale = queue.claim_one(execution_id, "worker-a", 0.05)
    assert stale is not None
    assert queue.claim_one(execution_id, "worker-b", 30) is None  # held
    time.sleep(0.1)
    fresh = queue.claim_one(execution_id, "worker-b", 30)
    assert fresh is not None and fresh.token != stale.token
    return stale, fresh


def test_an_append_with_a_lease_that_was_taken_over_is_refused(engines, calls):
    engine = engines(workers=0)
    execution = engine.execute(definition("fenced", {"a": fn("step")}), {})
    stale, fresh = _take_over(engine, execution.id)
    assert engine.store.queue.renew([stale], 30) == []
    with pytest.raises(LeaseLost):
        engine.store.events.append(execution, [_event(execution, 0)], stale)
    assert engine.store.events.read(execution.id) == []
    engine.store.events.append(execution, [_event(execution, 0)], fresh)
    assert [e.sequence for e in engine.store.events.read(execution.id)] == [0]
    [(renewed, control, offered)] = engine.store.queue.renew([fresh], 30)
    assert renewed.token == fresh.token and control is None and offered == 0


def test_a_runner_whose_lease_was_taken_over_writes_nothing(engines, calls):
    engine = engines(workers=0)
    execution = engine.execute(definition("fenced_runner", {"a": fn("step"), "b": fn("step")}, chain("a", "b")), {})
    stale, fresh = _take_over(engine, execution.id)

    async def run_with(lease: Lease) -> Any:
        runner = await engine.host.runner_for(await engine.status_async(execution.id), lease, park_after=None)
        return runner, await runner.run()

    runner, _ = engine._bridge.run(run_with(stale))
    assert runner.lost
    assert engine.store.events.read(execution.id) == []
    assert engine.status(execution.id).status == "pending"
    assert calls.runs == {}  # nothing starts before the first append is accepted

    _, done = engine._bridge.run(run_with(fresh))
    assert done.status == "completed"
    check_log(engine, engine.status(execution.id))
    assert calls.runs == {"a": 1, "b": 1}


class _StubRunner:
    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost = False
        self.state = SimpleNamespace(is_terminal=False)

    def lose(self) -> None:
        self.lost = True

    def poke(self, control: str | None) -> None:
        pass

    def poke_inbox(self, offered: int | None = None) -> None:
        pass


def test_lease_keeper_keeps_a_runner_added_during_a_renewal(engines, calls):
    """Regression: a runner added while a renew was in flight was declared lost (and its node re-run)."""
    engine = engines(workers=0)
    doc = definition("kept", {"a": fn("step")})
    one, two = engine.execute(doc, {}), engine.execute("kept", {})
    queue = engine.store.queue
    first = _StubRunner(queue.claim_one(one.id, "me", 30))
    second = _StubRunner(queue.claim_one(two.id, "me", 30))

    async def db(func: Callable[..., Any], *args: Any) -> Any:
        keeper.add(second)  # a worker claims and adds a runner while the renew runs
        return func(*args)

    keeper = LeaseKeeper(queue, db, ttl=30)
    keeper.add(first)
    asyncio.run(keeper.beat())
    assert not first.lost
    assert not second.lost  # its lease is perfectly valid
    assert second.lease.token in keeper.held
    queue.release(first.lease)  # a lease that really is gone is still reported
    keeper.held.pop(second.lease.token)
    asyncio.run(keeper.beat())
    assert first.lost and first.lease.token not in keeper.held


# -- pause, resume, cancel -----------------------------------------------------------------


def test_illegal_transitions_raise(engines, calls):
    engine = engines(workers=0)
    engine.create_workflow(definition("ctl", {"a": fn("step"), "b": fn("step")}, chain("a", "b")))
    x, y = engine.execute("ctl", {}), engine.execute("ctl", {})
    with pytest.raises(IllegalTransition):
        engine.resume(x.id)  # pending
    assert engine.pause(x.id).status == "paused"
    with pytest.raises(IllegalTransition):
        engine.pause(x.id)  # already paused
    cancelled = engine.cancel(y.id)  # nobody holds it: carried out at once
    assert cancelled.status == "failed" and cancelled.error["kind"] == "cancelled"
    assert [e.type for e in check_log(engine, cancelled)] == ["execution_started", "execution_failed"]
    for action in ("pause", "resume", "cancel"):
        with pytest.raises(IllegalTransition):
            getattr(engine, action)(y.id)

    worker = engines(workers=2)
    worker.start_worker()
    z = worker.execute("ctl", {})
    done = worker.wait(z.id, timeout=20)
    assert done.status == "completed"
    for action in ("pause", "resume", "cancel"):
        with pytest.raises(IllegalTransition):
            getattr(worker, action)(z.id)
    assert calls.runs == {"a": 1, "b": 1}


def test_an_execution_paused_while_queued_can_be_resumed(engines, calls, gate):
    """Regression: the drift check took the requested pause for a divergence (IllegalTransition on resume)."""
    engine = engines(workers=0)
    x = engine.execute(definition("ctl", {"a": fn("step"), "b": fn("step")}, chain("a", "b")), {})
    assert engine.pause(x.id).status == "paused"
    assert engine.resume(x.id).status == "running"
    with pytest.raises(IllegalTransition):
        engine.resume(x.id)  # running
    worker = engines(workers=2)
    worker.start_worker()
    done = worker.wait(x.id, timeout=20)
    assert done.status == "completed"
    log = check_log(worker, done)
    assert [e.type for e in log][:3] == ["execution_started", "execution_paused", "execution_resumed"]
    assert calls.runs == {"a": 1, "b": 1}
    # The pool may claim it at once: requests are then acted on by its runner. Its first
    # node holds until the pause is requested, or a fast pool could finish it first.
    _, release = gate
    y = engine.execute(definition("ctl-gated", {"a": fn("gate"), "b": fn("step")}, chain("a", "b")), {})
    engine.pause(y.id)
    release.set()
    until(lambda: engine.status(y.id).status == "paused", 10, "the pause")
    engine.cancel(y.id)  # paused -> failed
    cancelled = until(lambda: (row := engine.status(y.id)).is_terminal and row, 10, "the cancellation")
    assert cancelled.status == "failed" and cancelled.error["kind"] == "cancelled"
    assert [e.type for e in check_log(engine, cancelled)][-1] == "execution_failed"


@pytest.fixture
def gate(registry: cerebelum.HandlerRegistry, calls: Calls) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Handler `gate`: signals `entered`, then blocks until `release`."""
    entered, release = threading.Event(), threading.Event()

    def gated(ctx: cerebelum.StepContext) -> Any:
        calls.note(ctx)
        entered.set()
        release.wait(15)
        return "opened"

    registry.register("gate", gated)
    try:
        yield entered, release
    finally:
        release.set()


def test_pause_waits_for_the_node_in_flight_and_resume_continues(engines, calls, gate):
    """Regression too: the resumed execution was paused again by the drift check (a 'divergence')."""
    entered, release = gate
    engine = engines(workers=2, lease_ttl=0.6)  # a short heartbeat: the request is seen soon
    doc = definition("pausing", {"a": fn("gate"), "b": fn("step"), "c": fn("step")}, chain("a", "b", "c"))
    execution = engine.execute(doc, {})
    assert entered.wait(10)
    requested = engine.pause(execution.id)
    assert requested.control == "pause" or requested.status == "paused"  # held: the runner acts on it
    until(lambda: engine.status(execution.id).status == "paused", 10, "the pause")
    time.sleep(0.3)
    assert not of_type(engine.events(execution.id), "node_completed")  # the node in flight is not interrupted...
    release.set()
    until(lambda: of_type(engine.events(execution.id), "node_completed"), 10, "the node in flight to finish")
    until(lambda: engine.store.queue.counts()["leased"] == 0, 10, "the paused execution to be handed back")
    time.sleep(0.3)
    paused = engine.status(execution.id)
    assert paused.status == "paused"
    log = check_log(engine, paused)
    after = [e.type for e in log[log.index(of_type(log, "execution_paused")[0]) :]]
    assert "node_started" not in after  # ...and nothing starts after the pause
    assert not of_type(log, "node_cancelled")
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a"]
    assert calls.runs == {"a": 1}
    with pytest.raises(IllegalTransition):
        engine.pause(execution.id)

    assert engine.resume(execution.id).status == "running"
    done = until(lambda: _settled(engine.status(execution.id)), 20, "the resumed execution to end")
    assert done.status == "completed", done.error
    log = check_log(engine, done)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b", "c"]
    assert calls.runs == {"a": 1, "b": 1, "c": 1}


def _settled(execution: Execution) -> Execution | None:
    """Terminal, or paused by the drift check (reported at once rather than as a timeout)."""
    error = execution.error or {}
    return execution if execution.is_terminal or error.get("kind") == "divergence" else None


def test_cancel_stops_a_busy_execution(engines, calls, gate):
    entered, release = gate
    engine = engines(workers=2, lease_ttl=0.6)
    execution = engine.execute(definition("cancelling", {"a": fn("gate"), "b": fn("step")}, chain("a", "b")), {})
    assert entered.wait(10)
    engine.cancel(execution.id)
    done = engine.wait(execution.id, timeout=10)  # does not wait for the handler
    assert done.status == "failed" and done.error["kind"] == "cancelled"
    release.set()
    log = check_log(engine, done)
    assert [e.node_id for e in of_type(log, "node_cancelled")] == ["a"]
    assert not of_type(log, "node_completed") and not of_type(log, "node_started", "b")
    time.sleep(0.3)
    assert len(engine.events(execution.id)) == len(log)  # the late result is dropped
    assert calls.runs == {"a": 1}
    with pytest.raises(IllegalTransition):
        engine.cancel(execution.id)


# -- the supervisor and the PostgreSQL listener ----------------------------------------------


def test_supervisor_backoff_starts_over_after_a_healthy_run():
    starts: list[float] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def loop() -> None:
            starts.append(time.monotonic())
            if len(starts) <= 3:
                raise RuntimeError("crash")  # restarted after 0.1, 0.2, 0.4 s
            if len(starts) == 4:
                await asyncio.sleep(1.0)  # a healthy run...
                raise RuntimeError("crash after a healthy second")
            stop.set()

        await asyncio.wait_for(supervise("test", loop, stop), 10)

    asyncio.run(scenario())
    assert len(starts) == 5
    assert starts[4] - starts[3] - 1.0 < 0.5  # ...starts the backoff over (0.1 s), not 0.8 s


def test_closing_an_engine_while_notifications_arrive_leaves_the_listener_quiet(pg_url):
    empty_pg(pg_url)
    errors: list[str] = []
    stop = threading.Event()

    def notify() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(f"NOTIFY {QUEUE_CHANNEL}, 'x'")
                time.sleep(0.002)

    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}")
    spammer = threading.Thread(target=notify)
    spammer.start()
    try:
        for _ in range(4):
            engine = cerebelum.Engine(pg_url, workers=1, handlers=cerebelum.HandlerRegistry(), **FAST)
            engine.start_worker()
            time.sleep(0.2)
            engine.close()
            time.sleep(0.1)
    finally:
        stop.set()
        spammer.join(10)
        threading.excepthook = previous
    assert errors == []


def test_queue_counts_report_lapsed_leases(store_url):
    registry = cerebelum.HandlerRegistry()
    registry.register("noop", lambda ctx: 1)
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        stored = engine.create_workflow(
            {"name": "lapse", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "noop"}}}}
        )
        execution, lease = start_execution(stored, {}, engine.store, engine.clock, engine.ids, owner="gone", ttl=0.05)
        assert lease is not None and engine.store.queue.counts()["expired"] == 0
        time.sleep(0.2)  # the owner never renews: its lease lapses
        assert engine.store.queue.counts()["expired"] == 1
        claimed = engine.store.queue.claim("rescuer", 10, 30.0)
        assert [e.id for e, _ in claimed] == [execution.id]
        assert engine.store.queue.counts()["expired"] == 0


# -- executions the engine cannot load -------------------------------------------


def test_an_execution_whose_log_does_not_fold_is_paused_where_the_log_ends(engines, calls):
    engine = engines(workers=0)
    engine.create_workflow(definition("folding", {"a": fn("step"), "b": fn("step")}, chain("a", "b")))
    x = engine.execute("folding", {})
    begun = {
        "workflow": "folding",
        "version": 1,
        "input": {},
        "seed": x.seed,
        "clock": "real",
        "started_at": "2026-01-01T00:00:00Z",
    }
    started = Event(str(uuid.uuid4()), x.id, 0, "execution_started", None, begun, datetime.now(UTC))
    bogus = Event(str(uuid.uuid4()), x.id, 1, "no_such_event", None, {}, datetime.now(UTC))
    engine.store.events.append(x.evolve(status="running", last_sequence=1), [started, bogus])
    worker = engines(workers=2, lease_ttl=0.5)
    worker.start_worker()
    paused = until(lambda: (row := engine.status(x.id)).status == "paused" and row, 10, "the pause")
    assert paused.error["kind"] == "unloadable" and "no_such_event" in paused.error["message"]
    assert [e.type for e in engine.events(x.id)] == ["execution_started", "no_such_event", "execution_paused"]
    assert calls.runs == {}


def test_a_worker_without_a_handler_leaves_the_execution_to_one_that_has_it(store_url: str) -> None:
    """Spec section 11: a worker lacking a handler never fails the execution for it;
    it hands it back (status says which handler is missing) for a worker that has it."""
    only_a, only_b = cerebelum.HandlerRegistry(), cerebelum.HandlerRegistry()
    only_a.register("a", lambda ctx: {"by": "a"})
    only_b.register("b", lambda ctx: {"by": "b"})
    flow = definition("split", {"first": fn("a"), "second": fn("b")}, chain("first", "second"))
    with cerebelum.Engine(store_url, handlers=cerebelum.HandlerRegistry(), workers=0, **FAST) as admin:
        shared = admin.store if store_url == "memory://" else None
        admin.create_workflow(flow)
        ids = [admin.execute("split", {}).id for _ in range(6)]
        with cerebelum.Engine(store_url, handlers=only_a, workers=0, store=shared, **FAST) as left:
            left.start_worker(2)
            # only `a` is served: each execution runs `first`, then waits for a worker with `b`
            waiting = until(
                lambda: all((admin.status(i).error or {}).get("kind") == "missing_handler" for i in ids),
                20,
                "every execution to be handed back for handler 'b'",
            )
            assert waiting
            row = admin.status(ids[0])
            assert row.status == "running" and row.error["handler"] == "b" and row.error["node"] == "second"
            assert left.host.left_for_handler()["b"] >= len(ids)
            with cerebelum.Engine(store_url, handlers=only_b, workers=0, store=shared, **FAST) as right:
                right.start_worker(2)
                for execution_id in ids:
                    done = admin.wait(execution_id, timeout=30)
                    assert done.status == "completed", done.error
                    assert done.output == {"by": "b"} and done.error is None
                    log = check_log(admin, done)
                    assert not of_type(log, "node_failed")
                    assert [e.node_id for e in of_type(log, "node_completed")] == ["first", "second"]

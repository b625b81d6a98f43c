"""Signals and the `wait` node, deadlines and forks (interaction spec sections 1, 3
and 8), through the Engine over memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from tests.helpers import chain, check_log, definition, fn, in_threads

import cerebelum
from cerebelum.domain.errors import Conflict, IllegalTransition, LeaseLost, NotFound, ValidationError
from cerebelum.domain.ports import EventStamp


def wait(signal: str, **config: Any) -> dict[str, Any]:
    return {"type": "wait", "config": {"signal": signal, **config}}


APPROVAL = definition(
    "approval",
    {"prepare": fn("prepare"), "approve": wait("approve"), "publish": fn("publish")},
    chain("prepare", "approve", "publish"),
)


@pytest.fixture
def calls(registry: cerebelum.HandlerRegistry) -> list[str]:
    seen: list[str] = []
    registry.register("prepare", lambda ctx: seen.append("prepare") or {"draft": 1})
    registry.register("publish", lambda ctx: seen.append("publish") or {"published": ctx.data})
    return seen


def until(engine: cerebelum.Engine, execution_id: str, check: Any, timeout: float = 15.0) -> cerebelum.Execution:
    deadline = time.monotonic() + timeout
    while True:
        row = engine.status(execution_id)
        if check(row):
            return row
        assert time.monotonic() < deadline, f"still {row.status} (sequence {row.last_sequence})"
        time.sleep(0.02)


def waiting(engine: cerebelum.Engine, execution_id: str) -> cerebelum.Execution:
    """Until the execution waits for a signal, parked: no worker holds it."""
    def parked(row: cerebelum.Execution) -> bool:
        state = engine.state_at(execution_id)
        return bool(state["waiting_for_signals"]) and engine.store.queue.counts()["leased"] == 0

    return until(engine, execution_id, parked)


def test_a_wait_parks_until_its_signal_and_outputs_the_payload(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    assert engine.status(execution.id).status == "running"
    sequence = engine.signal(execution.id, "approve", {"by": "ana", "ok": True})
    done = engine.wait(execution.id, timeout=15)
    assert done.status == "completed", done.error
    assert done.output == {"published": {"by": "ana", "ok": True}}
    log = check_log(engine, done)
    received = log[sequence]
    assert received.type == "signal_received" and received.payload["name"] == "approve"
    consumed = next(e for e in log if e.type == "node_completed" and e.node_id == "approve")
    assert consumed.payload["signal"] == sequence and consumed.sequence > sequence
    assert calls == ["prepare", "publish"]
    assert engine.replay(done.id).identical and engine.replay(done.id, strict=True).identical


def test_a_signal_sent_before_the_wait_is_reached_is_kept_for_it(store_url, registry, calls):
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(APPROVAL)
        execution = engine.execute("approval", {})
        assert engine.status(execution.id).status == "pending"
        first = engine.signal(execution.id, "approve", "early")  # nobody runs it: the sender starts its log
        assert engine.status(execution.id).status == "running"
        engine.start_worker(2)
        done = engine.wait(execution.id, timeout=15)
        assert done.status == "completed" and done.output == {"published": "early"}
        assert engine.events(execution.id)[first].type == "signal_received"


def test_signals_are_consumed_once_each_in_arrival_order(store_url, registry):
    doc = definition(
        "votes",
        {"ask": fn("ask"), "collect": {"type": "map", "config": {"items": "data", "node": wait("vote")}}},
        chain("ask", "collect"),
    )
    registry.register("ask", lambda ctx: [1, 2, 3])
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(doc)
        execution = engine.execute("votes", {})
        sequences = [engine.signal(execution.id, "vote", {"n": n}) for n in range(4)]
        assert sequences == sorted(sequences) and len(set(sequences)) == 4
        engine.start_worker(2)
        done = engine.wait(execution.id, timeout=15)
        assert done.status == "completed", done.error
        assert done.output == [{"n": 0}, {"n": 1}, {"n": 2}]  # three waits, three signals, in arrival order
        state = engine.state_at(execution.id)
        assert [s["consumed_by"] for s in state["signals"]] == ["collect[0]", "collect[1]", "collect[2]", None]


def test_a_key_makes_a_signal_idempotent(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    first = engine.signal(execution.id, "approve", 1, key="webhook-77")
    again = engine.signal(execution.id, "approve", 2, key="webhook-77")
    assert again == first
    done = engine.wait(execution.id, timeout=15)
    assert done.output == {"published": 1}
    assert sum(e.type == "signal_received" for e in engine.events(execution.id)) == 1


def test_signals_to_unknown_or_ended_executions_are_refused(engine, calls):
    with pytest.raises(NotFound):
        engine.signal("exec-nope", "approve")
    done = engine.run(definition("quick", {"a": fn("prepare")}))
    with pytest.raises(Conflict, match="completed"):
        engine.signal(done.id, "approve")
    with pytest.raises(ValidationError) as caught:
        engine.signal(done.id, "bad name!", key="")
    assert {p.location for p in caught.value.problems} == {"signal", "key"}


def test_a_wait_times_out_for_good_and_the_error_can_be_routed(engine, registry, calls):
    registry.register("escalate", lambda ctx: {"escalated": ctx.data["kind"]})
    doc = definition(
        "escalation",
        {"approve": wait("approve", timeout_s=0.3), "publish": fn("publish"), "escalate": fn("escalate")},
        [{"from": "approve", "to": "publish"}, {"from": "approve", "to": "escalate", "on": "error"}],
    )
    done = engine.run(doc)
    assert done.status == "completed", done.error
    assert done.output == {"escalated": "timeout"}
    failed = next(e for e in engine.events(done.id) if e.type == "node_failed")
    assert failed.node_id == "approve" and "no signal 'approve'" in failed.payload["error"]["message"]
    assert engine.replay(done.id).identical


def test_a_signal_while_paused_is_consumed_after_resume(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    engine.pause(execution.id)
    until(engine, execution.id, lambda row: row.status == "paused")
    engine.signal(execution.id, "approve", "later")
    time.sleep(0.3)
    assert engine.status(execution.id).status == "paused"
    state = engine.state_at(execution.id)
    assert state["waiting_for_signals"] == [{"node_id": "approve", "signal": "approve"}]
    assert [s["consumed_by"] for s in state["signals"]] == [None]
    engine.resume(execution.id)
    done = engine.wait(execution.id, timeout=15)
    assert done.output == {"published": "later"}


def test_a_sender_delivers_to_a_runner_that_holds_the_execution(engine, registry, calls):
    """The wait and a slow branch run together: the runner never parks, the signal reaches it."""
    release = threading.Event()
    registry.register("slow", lambda ctx: release.wait(10) and "slow done")
    doc = definition(
        "both",
        {"both": {"type": "parallel", "config": {"branches": {"slow": fn("slow"), "approval": wait("approve")}}}},
    )
    engine.create_workflow(doc)
    execution = engine.execute("both", {})
    until(engine, execution.id, lambda row: bool(engine.state_at(row.id)["waiting_for_signals"]))
    engine.signal(execution.id, "approve", "yes")
    release.set()
    done = engine.wait(execution.id, timeout=15)
    assert done.output == {"slow": "slow done", "approval": "yes"}


# -- deadlines -----------------------------------------------------------------


def test_a_deadline_given_at_start_fails_the_execution_with_kind_timeout(engine, calls):
    engine.create_workflow(APPROVAL)
    started = time.monotonic()
    execution = engine.execute("approval", {}, timeout_s=0.5)
    done = engine.wait(execution.id, timeout=15)
    assert time.monotonic() - started < 10
    assert done.status == "failed" and done.error["kind"] == "timeout"
    log = check_log(engine, done)
    assert "deadline" in log[0].payload
    assert any(e.type == "node_cancelled" and e.node_id == "approve" for e in log)
    assert engine.replay(done.id).identical
    with pytest.raises(Conflict):
        engine.signal(done.id, "approve")


def test_a_definition_deadline_counts_on_the_virtual_clock(engine, registry):
    registry.register("noop", lambda ctx: ctx.data)
    doc = definition(
        "month",
        {"a": fn("noop"), "sleep": {"type": "delay", "config": {"seconds": 30 * 86400}}, "b": fn("noop")},
        chain("a", "sleep", "b"),
        timeout_s=86400,
    )
    started = time.monotonic()
    done = engine.run(doc, {}, virtual_time=True)
    assert time.monotonic() - started < 10
    assert done.status == "failed" and done.error["kind"] == "timeout", done.error
    assert engine.replay(done.id).identical
    short = engine.run(doc, {}, virtual_time=True, timeout_s=40 * 86400)  # a start's own deadline wins
    assert short.status == "completed", short.error


def test_invalid_waits_and_deadlines_are_located(engine):
    doc = definition("bad", {"w": {"type": "wait", "config": {"timeout_s": -1}}}, timeout_s="soon")
    problems = {p.location for p in engine.validate(doc)}
    assert {"nodes.w.config.signal", "nodes.w.config.timeout_s", "timeout_s"} <= problems


# -- fork ----------------------------------------------------------------------


@pytest.fixture
def flaky(registry: cerebelum.HandlerRegistry) -> dict[str, Any]:
    state: dict[str, Any] = {"broken": True, "calls": []}

    def reserve(ctx: Any) -> Any:
        state["calls"].append("reserve")
        return {"room": 12}

    def charge(ctx: Any) -> Any:
        state["calls"].append("charge")
        if state["broken"]:
            raise RuntimeError("bug in charge")
        return {"charged": ctx.data["room"]}

    registry.register("reserve", reserve)
    registry.register("charge", charge)
    return state


BOOKING = definition(
    "booking", {"reserve": fn("reserve"), "charge": fn("charge", retry={"max_attempts": 2, "initial_interval_s": 0.01})},
    chain("reserve", "charge"),
)  # fmt: skip


def test_a_fork_retries_from_the_failure_without_calling_completed_nodes_again(engine, flaky):
    failed = engine.run(BOOKING, {})
    assert failed.status == "failed" and flaky["calls"] == ["reserve", "charge", "charge"]
    flaky["broken"] = False  # the fix is deployed
    fork = engine.fork(failed.id)
    assert fork.id != failed.id and fork.forked_from == failed.id
    assert fork.to_json()["forked_from"] == {"execution_id": failed.id, "sequence": fork.forked_at}
    done = engine.wait(fork.id, timeout=15)
    assert done.status == "completed", done.error
    assert done.output == {"charged": 12}
    assert flaky["calls"] == ["reserve", "charge", "charge", "charge"]  # reserve kept its recorded output
    source_log, fork_log = engine.events(failed.id), engine.events(fork.id)
    kept = fork.forked_at + 1
    assert [(e.type, e.payload) for e in fork_log[:kept]] == [(e.type, e.payload) for e in source_log[:kept]]
    assert engine.status(failed.id).status == "failed"  # the source never changes
    check_log(engine, done)
    assert engine.replay(done.id).identical


def test_a_fork_at_an_unsettled_event_moves_back_to_a_settled_one(engine, flaky):
    flaky["broken"] = False
    done = engine.run(BOOKING, {})
    log = engine.events(done.id)
    completed = next(e.sequence for e in log if e.type == "node_completed" and e.node_id == "reserve")
    fork = engine.fork(done.id, at=completed + 1)  # the edge taken after it: not where the runner stops
    assert fork.forked_at < completed + 1
    assert engine.wait(fork.id, timeout=15).status == "completed"
    with pytest.raises(NotFound, match="outside the log"):
        engine.fork(done.id, at=len(log) + 5)


def test_a_pending_execution_cannot_be_forked(store_url, registry, flaky):
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(BOOKING)
        pending = engine.execute("booking", {})
        with pytest.raises(IllegalTransition, match="nothing to fork"):
            engine.fork(pending.id)


def test_one_keyed_signal_sent_by_twenty_clients_at_once_is_appended_once(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    sequences = in_threads(lambda: engine.signal(execution.id, "approve", "once", key="same"), 20)
    assert len(set(sequences)) == 1
    done = engine.wait(execution.id, timeout=15)
    assert done.output == {"published": "once"}
    assert sum(e.type == "signal_received" for e in engine.events(execution.id)) == 1


def test_payloads_that_cannot_be_stored_are_refused_before_anything_is_kept(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    for payload in (deep, "\ud800", float("nan")):
        with pytest.raises(ValidationError) as caught:
            engine.signal(execution.id, "approve", payload)
        assert caught.value.problems[0].location == "payload"
    assert not any(e.type == "signal_received" for e in engine.events(execution.id))
    assert engine.status(execution.id).signals_sent == 0


def test_a_fork_keeps_the_sources_queue_and_priority(engine, flaky):
    """The fork's row is written whole (every column the store reads back), not a hand-picked few."""
    engine.create_workflow(BOOKING)
    source = engine.execute("booking", {}, queue="slow-lane", priority=7, concurrency_key="tenant-1")
    failed = engine.wait(source.id, timeout=15)
    assert failed.status == "failed"
    flaky["broken"] = False
    fork = engine.fork(failed.id)
    row = engine.status(fork.id)
    assert (row.queue, row.priority, row.concurrency_key) == ("slow-lane", 7, "tenant-1")
    assert row.forked_from == failed.id and row.timeout_s == failed.timeout_s
    assert engine.wait(fork.id, timeout=15).status == "completed"


def stamp(engine: cerebelum.Engine) -> EventStamp:
    return EventStamp(engine.ids.new_id(), engine.clock.now(), "test", None)


def test_a_signal_to_an_execution_nobody_holds_goes_into_its_log_with_the_offer(engine, calls):
    """The sender's fast path: no lease, no replay; the execution becomes claimable at once."""
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    row = engine.status(execution.id)
    offered = engine.store.signals.offer(execution.id, "approve", {"ok": 1}, None, engine.clock.now(), stamp(engine))
    assert offered.event is not None and offered.event.sequence == row.last_sequence + 1
    assert offered.event.payload == {"name": "approve", "payload": {"ok": 1}, "key": None, "id": offered.id}
    assert engine.events(execution.id)[offered.event.sequence] == offered.event
    done = engine.wait(execution.id, timeout=15)  # woken by the offer: nobody else touched it
    assert done.output == {"published": {"ok": 1}}
    assert check_log(engine, done)[offered.event.sequence].type == "signal_received"


def test_a_held_execution_gets_its_signal_from_its_holder_not_from_the_offer(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    lease = engine.store.queue.claim_one(execution.id, "someone-else", 30)
    assert lease is not None
    offered = engine.store.signals.offer(execution.id, "approve", "held", None, engine.clock.now(), stamp(engine))
    assert offered.event is None
    assert [s.id for s in engine.store.signals.pending(execution.id, ())] == [offered.id]
    assert engine.store.signals.sequence_of(execution.id, offered.id) is None
    engine.store.queue.release(lease)
    done = engine.wait(execution.id, timeout=15)  # a worker takes it from the inbox
    assert done.output == {"published": "held"}


def test_a_holder_whose_lease_lapsed_cannot_write_after_the_offer_appended(sql_url, registry, calls):
    with cerebelum.Engine(sql_url, handlers=registry) as engine:
        engine.create_workflow(APPROVAL)
        execution = engine.execute("approval", {})
        waiting(engine, execution.id)
    with cerebelum.Engine(sql_url, handlers=registry, workers=0) as engine:  # nobody else claims it
        lapsed = engine.store.queue.claim_one(execution.id, "stalled", 0.05)
        assert lapsed is not None
        time.sleep(0.1)
        offered = engine.store.signals.offer(execution.id, "approve", "late", None, engine.clock.now(), stamp(engine))
        assert offered.event is not None
        row = engine.status(execution.id)
        late = replace(offered.event, id=engine.ids.new_id(), sequence=offered.event.sequence + 1)
        with pytest.raises(LeaseLost):
            engine.store.events.append(row, [late], lapsed)
        engine.start_worker(1)
        assert engine.wait(execution.id, timeout=15).output == {"published": "late"}


def test_a_signal_before_the_log_begins_is_left_to_whoever_starts_it(store_url, registry, calls):
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(APPROVAL)
        execution = engine.execute("approval", {})
        offered = engine.store.signals.offer(execution.id, "approve", "early", None, engine.clock.now(), stamp(engine))
        assert offered.event is None and engine.events(execution.id) == []
        engine.start_worker(1)
        assert engine.wait(execution.id, timeout=15).output == {"published": "early"}


def test_twenty_different_signals_at_once_to_a_parked_execution_get_twenty_sequences(engine, calls):
    engine.create_workflow(APPROVAL)
    execution = engine.execute("approval", {})
    waiting(engine, execution.id)
    counter = iter(range(20))
    lock = threading.Lock()

    def send() -> int:
        with lock:
            n = next(counter)
        return engine.signal(execution.id, "other", n)

    sequences = in_threads(send, 20)
    assert len(set(sequences)) == 20
    engine.signal(execution.id, "approve", "last")
    done = engine.wait(execution.id, timeout=15)
    log = check_log(engine, done)
    others = [e for e in log if e.type == "signal_received" and e.payload["name"] == "other"]
    assert sorted(e.payload["payload"] for e in others) == list(range(20))
    assert sorted(e.sequence for e in others) == sorted(sequences)
    assert done.output == {"published": "last"}


def test_a_request_waiting_on_the_row_is_carried_out_before_the_signal(sql_url, registry, calls):
    """A cancel asked of a parked execution that no runner has acted on yet: the sender
    takes the slow path, whose runner acts on the request first (no node starts after)."""
    with cerebelum.Engine(sql_url, handlers=registry) as engine:
        engine.create_workflow(APPROVAL)
        execution = engine.execute("approval", {})
        waiting(engine, execution.id)
    with cerebelum.Engine(sql_url, handlers=registry, workers=0) as engine:
        engine.store.queue.request(execution.id, "cancel")  # recorded, not acted on: nobody runs it
        offered = engine.store.signals.offer(execution.id, "other", None, None, engine.clock.now(), stamp(engine))
        assert offered.event is None
        with pytest.raises(Conflict, match="failed"):
            engine.signal(execution.id, "approve", "too late")
        log = engine.events(execution.id)
        assert log[-1].type == "execution_failed" and log[-1].payload["error"]["kind"] == "cancelled"
        assert not any(e.type == "node_started" and e.node_id == "publish" for e in log)
        assert calls == ["prepare"]

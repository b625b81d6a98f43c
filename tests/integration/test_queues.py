"""Queues and flow control (spec section 9) over the in-memory, SQLite and
PostgreSQL stores: concurrency, per-key concurrency, rate and priority are
enforced by the claim, across several engines (each its own worker pool and,
on SQL, its own connections) racing on one database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.helpers import definition, fn, of_type

import cerebelum
from cerebelum.application.queues import delete_queue, list_queues, set_queue, show_queue
from cerebelum.domain.queues import InvalidSetting, QueueStats

FAST = {"poll_interval": 0.05, "lease_ttl": 5.0}
SLEEPY = definition("sleepy", {"work": fn("sleepy")})
NOOP = definition("noop", {"wait": {"type": "delay", "config": {"seconds": 0}}})


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return value


class Gate:
    """A handler that sleeps `input.sleep` seconds, or blocks until opened."""

    def __init__(self, registry: cerebelum.HandlerRegistry) -> None:
        self.opened = threading.Event()

        @registry.handler("sleepy", intercept=False)
        def sleepy(ctx: cerebelum.StepContext) -> Any:
            pause = ctx.input.get("sleep") if isinstance(ctx.input, dict) else None
            if pause is None:
                self.opened.wait(20)
            else:
                time.sleep(pause)
            if isinstance(ctx.input, dict) and ctx.input.get("fail"):
                raise cerebelum.NonRetryable("asked to fail")
            return ctx.input


@pytest.fixture
def gate(registry: cerebelum.HandlerRegistry) -> Gate:
    return Gate(registry)


@pytest.fixture
def engines(store_url: str, registry: cerebelum.HandlerRegistry) -> Iterator[Callable[..., cerebelum.Engine]]:
    """engines(workers=N, queues=...): engines on one database (memory: one shared store)."""
    with ExitStack() as stack:
        shared: dict[str, Any] = {}

        def make(workers: int = 8, **options: Any) -> cerebelum.Engine:
            store = shared.get("store") if store_url.startswith("memory") else None
            made = cerebelum.Engine(store_url, handlers=registry, workers=workers, store=store, **FAST, **options)
            engine = stack.enter_context(made)
            shared.setdefault("store", engine.store)
            return engine

        yield make


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end] spans open at one instant (an end before a start at a tie)."""
    marks = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda m: (m[0], m[1]))
    most = now = 0
    for _, step in marks:
        now += step
        most = max(most, now)
    return most


def spans(engine: cerebelum.Engine, ids: list[str]) -> list[tuple[datetime, datetime]]:
    """(execution_started, terminal event) timestamps of each execution, from its log, to the
    millisecond (the start's timestamp is recorded to the millisecond)."""
    found = []
    for execution_id in ids:
        log = engine.events(execution_id)
        start, end = of_type(log, "execution_started")[0].timestamp, log[-1].timestamp
        found.append((_ms(start), _ms(end)))
    return found


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def wait_all(engine: cerebelum.Engine, ids: list[str], timeout: float = 60) -> list[cerebelum.Execution]:
    return [engine.wait(execution_id, timeout=timeout) for execution_id in ids]


def test_concurrency_holds_across_engines_racing_for_the_queue(
    engines: Callable[..., cerebelum.Engine], gate: Gate
) -> None:
    starter = engines(workers=0)
    starter.create_workflow(SLEEPY)
    set_queue(starter.store, "partner", concurrency=2)
    ids = [starter.execute("sleepy", {"sleep": 0.15}, queue="partner").id for _ in range(8)]
    others = [starter.execute("sleepy", {"sleep": 0.15}).id for _ in range(4)]  # the default queue: unlimited
    seen: list[int] = []

    def drained() -> bool:
        seen.append(starter.store.queues.stats().get("partner", QueueStats()).running)  # live, from the store
        return all(starter.status(i).is_terminal for i in ids)

    for _ in range(3):
        engines(workers=8).start_worker()  # three pools of 8 claim at once
    until(drained, 60, "the queue to drain")
    done = wait_all(starter, ids + others)
    assert {e.status for e in done} == {"completed"}
    assert max(seen) <= 2
    assert most_at_once(spans(starter, ids)) == 2  # from the logs: never more, and the limit was used
    assert most_at_once(spans(starter, others)) > 2  # the unlimited queue ran wider
    assert [starter.status(i).queue for i in ids] == ["partner"] * 8


def test_per_key_concurrency_bounds_each_key(engines: Callable[..., cerebelum.Engine], gate: Gate) -> None:
    starter = engines(workers=0)
    starter.create_workflow(SLEEPY)
    set_queue(starter.store, "tenants", per_key_concurrency=1)
    by_key = {key: [starter.execute("sleepy", {"sleep": 0.1}, queue="tenants", concurrency_key=key).id for _ in range(3)]
              for key in ("a", "b", "c")}  # fmt: skip
    keyless = [starter.execute("sleepy", {"sleep": 0.1}, queue="tenants").id for _ in range(3)]
    engines(workers=8).start_worker()
    engines(workers=8).start_worker()
    wait_all(starter, [i for ids in by_key.values() for i in ids] + keyless)
    for key, ids in by_key.items():
        assert most_at_once(spans(starter, ids)) == 1, key
    assert most_at_once(spans(starter, [i for ids in by_key.values() for i in ids])) > 1  # keys ran side by side
    assert starter.status(by_key["a"][0]).concurrency_key == "a"


def test_rate_admits_at_most_n_per_sliding_window(engines: Callable[..., cerebelum.Engine]) -> None:
    starter = engines(workers=0)
    starter.create_workflow(NOOP)
    set_queue(starter.store, "llm", rate="5/s")
    ids = [starter.execute("noop", queue="llm").id for _ in range(12)]
    engines(workers=8).start_worker()
    engines(workers=8).start_worker()
    wait_all(starter, ids)
    claims = sorted(starter.status(i).first_claimed_at for i in ids)
    assert all(claims[i + 5] - claims[i] >= timedelta(seconds=1) for i in range(len(claims) - 5))
    assert claims[4] - claims[0] < timedelta(seconds=1)  # the first five went at once: the window, not a pace
    rows = [starter.status(i) for i in ids]
    assert all(r.started_at is not None and r.started_at >= _ms(r.first_claimed_at) for r in rows)  # started once admitted


def test_priority_then_age_orders_the_starts(engines: Callable[..., cerebelum.Engine]) -> None:
    starter = engines(workers=0)
    starter.create_workflow(NOOP)
    set_queue(starter.store, "one", concurrency=1)
    priorities = [500, 10, 900, 10, 1, 500]
    ids = [starter.execute("noop", queue="one", priority=p).id for p in priorities]
    engines(workers=4).start_worker()
    done = wait_all(starter, ids)
    order = [e.id for e in sorted(done, key=lambda e: e.first_claimed_at)]
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (priorities[i], i))]
    assert order == expected
    assert [starter.status(i).priority for i in ids] == priorities


@pytest.mark.parametrize("ending", ["cancel", "fail"])
def test_a_slot_comes_back_when_its_execution_ends(engines: Callable[..., cerebelum.Engine], gate: Gate, ending: str) -> None:
    starter = engines(workers=0)
    starter.create_workflow(SLEEPY)
    set_queue(starter.store, "single", concurrency=1)
    first = starter.execute("sleepy", {"fail": True} if ending == "fail" else {}, queue="single")
    second = starter.execute("sleepy", {"sleep": 0}, queue="single")
    engines(workers=4).start_worker()
    until(lambda: starter.status(first.id).status == "running", 30, "the first to start")
    assert starter.status(second.id).first_claimed_at is None
    assert show_queue(starter.store, "single").stats.waiting == 1
    if ending == "cancel":
        starter.cancel(first.id)
    else:
        gate.opened.set()  # the first fails
    assert starter.wait(second.id, timeout=30).status == "completed"
    assert starter.wait(first.id, timeout=30).status == "failed"
    gate.opened.set()


def test_a_parked_execution_keeps_its_slot(engines: Callable[..., cerebelum.Engine]) -> None:
    starter = engines(workers=0)
    starter.create_workflow(definition("nap", {"nap": {"type": "delay", "config": {"seconds": 1}}}))
    set_queue(starter.store, "nap", concurrency=1)
    first, second = (starter.execute("nap", queue="nap") for _ in range(2))
    engines(workers=4, park_after=0.1).start_worker()
    until(lambda: starter.status(first.id).status == "running" and starter.store.queue.counts()["parked"] == 1, 30, "a park")
    assert starter.status(second.id).first_claimed_at is None  # the parked one still holds the only slot
    assert starter.wait(second.id, timeout=30).status == "completed"
    assert starter.status(second.id).first_claimed_at >= starter.status(first.id).completed_at


def test_workers_serve_only_their_queues(engines: Callable[..., cerebelum.Engine]) -> None:
    starter = engines(workers=0)
    starter.create_workflow(NOOP)
    mine = starter.execute("noop", queue="mine")
    theirs = starter.execute("noop", queue="theirs")
    plain = starter.execute("noop")
    engines(workers=4, queues=["mine", "default"]).start_worker()
    assert starter.wait(mine.id, timeout=30).status == "completed"
    assert starter.wait(plain.id, timeout=30).status == "completed"
    assert starter.status(theirs.id).status == "pending"
    engines(workers=4, queues=["theirs"]).start_worker()
    assert starter.wait(theirs.id, timeout=30).status == "completed"


def test_changed_limits_apply_to_the_next_claim(engines: Callable[..., cerebelum.Engine], gate: Gate) -> None:
    starter = engines(workers=0)
    starter.create_workflow(SLEEPY)
    set_queue(starter.store, "grow", concurrency=1)
    ids = [starter.execute("sleepy", {}, queue="grow").id for _ in range(3)]
    engines(workers=8).start_worker()
    until(lambda: show_queue(starter.store, "grow").stats.running == 1, 30, "one to start")
    set_queue(starter.store, "grow", concurrency=3)
    until(lambda: show_queue(starter.store, "grow").stats.running == 3, 30, "the raised limit to be used")
    delete_queue(starter.store, "grow")
    gate.opened.set()
    assert {e.status for e in wait_all(starter, ids)} == {"completed"}


def test_run_in_one_process_waits_for_its_slot(engines: Callable[..., cerebelum.Engine], gate: Gate) -> None:
    worker = engines(workers=4)
    worker.create_workflow(SLEEPY)
    set_queue(worker.store, "solo", concurrency=1)
    holder = worker.execute("sleepy", {}, queue="solo")
    worker.start_worker()
    until(lambda: worker.status(holder.id).status == "running", 30, "the holder to start")
    runner = engines(workers=0)
    result: list[cerebelum.Execution] = []
    thread = threading.Thread(target=lambda: result.append(runner.run("sleepy", {"sleep": 0}, queue="solo", priority=1)))
    thread.start()
    waiting = until(lambda: [e for e in runner.executions("sleepy") if e.id != holder.id], 30, "the run's execution")[0]
    time.sleep(0.3)  # several claim rounds: it must still wait (the check below fails if run took the slot)
    assert runner.status(waiting.id).first_claimed_at is None and not result
    gate.opened.set()
    thread.join(30)
    assert result and result[0].status == "completed" and result[0].queue == "solo"
    assert runner.status(waiting.id).first_claimed_at >= worker.status(holder.id).completed_at


def test_the_definition_chooses_the_queue_unless_the_start_does(engines: Callable[..., cerebelum.Engine]) -> None:
    engine = engines(workers=0)
    engine.create_workflow({**NOOP, "name": "routed", "queue": "from-definition"})
    assert engine.execute("routed").queue == "from-definition"
    assert engine.execute("routed", queue="explicit").queue == "explicit"
    plain = engine.execute("routed", queue=None)
    assert (plain.queue, plain.priority, plain.concurrency_key) == ("from-definition", 500, None)
    data = engine.status(plain.id).to_json()
    assert (data["queue"], data["priority"], data["concurrency_key"]) == ("from-definition", 500, None)
    names = [view.settings.name for view in list_queues(engine.store)]
    assert names == ["default", "explicit", "from-definition"]  # queues with executions, and `default`


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 1001}, "priority"),
        ({"priority": True}, "priority"),
        ({"queue": "has space"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"concurrency_key": ""}, "concurrency_key"),
        ({"concurrency_key": "k" * 201}, "concurrency_key"),
    ],
)
def test_bad_start_options_name_their_field(
    engines: Callable[..., cerebelum.Engine], options: dict[str, Any], field: str
) -> None:
    engine = engines(workers=0)
    engine.create_workflow(NOOP)
    with pytest.raises(InvalidSetting) as raised:
        engine.execute("noop", **options)
    assert raised.value.location == field
    assert engine.executions("noop") == []


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"per_key_concurrency": 0}, "per_key_concurrency"),
        ({"rate": "lots"}, "rate"),
        ({"rate": "0/s"}, "rate"),
        ({"rate": "5/d"}, "rate"),
    ],
)
def test_bad_limits_name_their_field(engines: Callable[..., cerebelum.Engine], limits: dict[str, Any], field: str) -> None:
    engine = engines(workers=0)
    with pytest.raises(InvalidSetting) as raised:
        set_queue(engine.store, "q", **limits)
    assert raised.value.location == field
    assert engine.store.queues.get("q") is None


def test_queue_settings_round_trip(engines: Callable[..., cerebelum.Engine]) -> None:
    engine = engines(workers=0)
    view = set_queue(engine.store, "llm", concurrency=4, per_key_concurrency=1, rate="60/m")
    assert view.to_json() | {"oldest_waiting": None} == {
        "name": "llm", "concurrency": 4, "per_key_concurrency": 1, "rate": "60/m",
        "waiting": 0, "running": 0, "oldest_waiting": None,
    }  # fmt: skip
    assert set_queue(engine.store, "llm", rate="2/h").to_json()["concurrency"] is None  # set replaces every limit
    with pytest.raises(InvalidSetting, match="unknown queue"):
        show_queue(engine.store, "nowhere")
    delete_queue(engine.store, "llm")
    with pytest.raises(cerebelum.NotFound):
        delete_queue(engine.store, "llm")


def test_run_runs_children_of_a_limited_queue_here_one_slot_at_a_time(engines: Callable[..., cerebelum.Engine]) -> None:
    engine = engines(workers=0)  # `run DEF`: no pool; the children must run here all the same
    engine.create_workflow({**definition("kid", {"nap": {"type": "delay", "config": {"seconds": 0.05}}}), "queue": "kids"})
    set_queue(engine.store, "kids", concurrency=1)
    each = {"type": "workflow", "config": {"workflow": "kid"}}
    parent = definition("fan", {"each": {"type": "map", "config": {"items": "input", "node": each}}})
    done = engine.run(parent, [1, 2, 3])
    assert done.status == "completed", done.error
    children = engine.executions(parent=done.id)
    assert len(children) == 3 and {c.queue for c in children} == {"kids"}
    assert most_at_once(spans(engine, [c.id for c in children])) == 1


def test_limits_set_after_claims_without_any_still_bind_the_next_claims(
    engines: Callable[..., cerebelum.Engine], gate: Gate
) -> None:
    """A claimer that saw no limited queue skips reading the limits (PostgreSQL: one
    statement whose rows say whether limits exist now); limits set afterwards, by
    another engine, bind its next claims, and plain work still waiting must not
    keep the limited queue from being admitted (its very next claim after seeing them)."""
    starter, claimer = engines(workers=0), engines(workers=0)
    starter.create_workflow(SLEEPY)
    plain = [starter.execute("sleepy", {"sleep": 0}).id for _ in range(4)]
    [(first, _)] = claimer.store.queue.claim("me", 1, 30)  # no limits anywhere: nothing to read
    assert first.id in plain
    set_queue(starter.store, "late", concurrency=1)
    limited = [starter.execute("sleepy", {}, queue="late").id for _ in range(3)]
    [(second, _)] = claimer.store.queue.claim("me", 1, 30)  # PostgreSQL: plain, its row saying limits exist now
    [(third, _)] = claimer.store.queue.claim("me", 1, 30)  # admission first (SQLite, memory: already the second)
    assert [x.id in limited for x in (second, third)].count(True) == 1
    rest = [execution.id for execution, _ in claimer.store.queue.claim("me", 10, 30)]
    assert not set(rest) & set(limited)  # one slot, taken
    assert len(rest) == 2 and set(rest) <= set(plain)

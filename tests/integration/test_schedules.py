"""Schedules (interaction spec section 6) over memory, SQLite and PostgreSQL: the
scheduler's pass driven by a fake clock (no waiting for real minutes), racing
processes on one database, overlap, catch-up, pause/resume and trigger; and one
real-time pass through an Engine's own worker pool."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from tests.helpers import definition, fn

import cerebelum
from cerebelum.application.schedules import (
    SchedulePorts,
    TickCounts,
    create_schedule,
    delete_schedule,
    describe_schedule,
    fire_due,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
)
from cerebelum.domain.errors import Conflict, NotFound, ValidationError

T0 = datetime(2031, 1, 6, 8, 0, 0, tzinfo=UTC)  # in the future: a real scheduler running beside leaves these alone


class FakeClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def ports_of(engine: cerebelum.Engine, clock: FakeClock) -> SchedulePorts:
    assert engine.host.calendar is not None
    return SchedulePorts(engine.store, engine.host.calendar, clock, engine.ids)


@pytest.fixture
def quiet(store_url: str, registry: cerebelum.HandlerRegistry):  # an engine that runs nothing by itself
    registry.register("report", lambda ctx: {"day": ctx.input.get("day")})
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(definition("report", {"make": fn("report")}))
        yield engine


def every(ports: SchedulePorts, name: str = "tick", seconds: int = 60, **fields: object):
    return create_schedule({"name": name, "workflow": "report", "every_s": seconds, "input": {"day": 1}, **fields}, ports)


def scheduled(engine: cerebelum.Engine, name: str = "tick") -> list[cerebelum.Execution]:
    return sorted((e for e in engine.executions(limit=1000) if e.schedule_name == name), key=lambda e: e.schedule_tick)


def test_each_due_tick_starts_one_execution_with_its_schedule_and_key(quiet, clock):
    ports = ports_of(quiet, clock)
    created = every(ports)
    assert created.next_fire == T0 + timedelta(seconds=60)
    assert fire_due(ports)[0] == []  # nothing due yet
    clock.advance(60)
    started, soonest = fire_due(ports)
    assert len(started) == 1 and soonest == T0 + timedelta(seconds=120)
    row = quiet.status(started[0].id).to_json()
    assert row["schedule"] == {"name": "tick", "tick": "2031-01-06T08:01:00Z"}
    assert row["key"] == "schedule:tick:2031-01-06T08:01:00Z" and row["input"] == {"day": 1}
    assert fire_due(ports)[0] == []  # the same tick again: nothing more
    clock.advance(0.5)
    assert fire_due(ports)[0] == []
    shown = describe_schedule("tick", ports)
    assert shown["last_tick"] == "2031-01-06T08:01:00Z" and shown["next_fires"][0] == "2031-01-06T08:02:00Z"
    assert [(t["outcome"], t["execution_id"], t["status"]) for t in shown["recent"]] == [("started", started[0].id, "pending")]


def race(engine: cerebelum.Engine, clock: FakeClock, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        barrier.wait()
        fire_due(ports_of(engine, clock))
    except BaseException as exc:  # re-raised in the test's thread
        errors.append(exc)


def test_processes_racing_on_the_same_tick_start_one_execution(sql_url, registry, clock):
    registry.register("report", lambda ctx: {})
    engines = [cerebelum.Engine(sql_url, handlers=registry, workers=0) for _ in range(3)]
    try:
        engines[0].create_workflow(definition("report", {"make": fn("report")}))
        every(ports_of(engines[0], clock), seconds=10, overlap="allow", catchup="all")
        for _ in range(5):
            clock.advance(10)
            barrier = threading.Barrier(6)
            errors: list[BaseException] = []

            threads = [threading.Thread(target=race, args=(engines[i % 3], clock, barrier, errors)) for i in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
        runs = scheduled(engines[1])
        assert [e.schedule_tick for e in runs] == [T0 + timedelta(seconds=10 * i) for i in range(1, 6)]
        recent = describe_schedule("tick", ports_of(engines[2], clock))["recent"]
        assert [t["outcome"] for t in recent] == ["started"] * 5
    finally:
        for engine in engines:
            engine.close()


def test_overlap_skip_skips_ticks_while_the_previous_execution_runs(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports)
    counts = TickCounts()
    clock.advance(60)
    first = fire_due(ports, counts)[0][0]
    clock.advance(60)
    assert fire_due(ports, counts)[0] == []  # the first one is still pending: skipped
    recent = describe_schedule("tick", ports)["recent"]
    assert recent[0]["outcome"] == "skipped" and first.id in recent[0]["reason"]
    quiet.cancel(first.id)  # it ends
    clock.advance(60)
    assert len(fire_due(ports, counts)[0]) == 1
    assert (counts.started, counts.skipped) == (2, 1)


def test_overlap_allow_starts_every_tick(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports, overlap="allow")
    for _ in range(3):
        clock.advance(60)
        fire_due(ports)
    assert len(scheduled(quiet)) == 3


@pytest.mark.parametrize(("catchup", "expected"), [("latest", 1), ("all", 10), ("none", 0)])
def test_catchup_after_downtime(quiet, clock, catchup, expected):
    ports = ports_of(quiet, clock)
    every(ports, overlap="allow", catchup=catchup)
    clock.advance(600 + 30)  # ten ticks passed while no worker ran
    counts = TickCounts()
    fire_due(ports, counts)
    runs = scheduled(quiet)
    assert len(runs) == expected and counts.late == expected
    if catchup == "latest":
        assert runs[0].schedule_tick == T0 + timedelta(seconds=600)
    recent = describe_schedule("tick", ports)["recent"]
    assert ("missed" in [t["outcome"] for t in recent]) == (catchup != "all")
    clock.advance(30)  # the next tick, on time: started whatever the policy
    fire_due(ports, counts)
    assert len(scheduled(quiet)) == expected + 1


def test_catchup_all_starts_at_most_100_missed_ticks(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports, seconds=1, overlap="allow", catchup="all")
    clock.advance(150)
    fire_due(ports)
    runs = scheduled(quiet)
    assert len(runs) == 100 and runs[0].schedule_tick == T0 + timedelta(seconds=51)


def test_pause_stops_ticks_and_resume_does_not_catch_up(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports, overlap="allow", catchup="all")
    assert pause_schedule("tick", ports).state == "paused"
    clock.advance(300)
    assert fire_due(ports)[0] == []
    assert describe_schedule("tick", ports)["next_fires"] == []
    resumed = resume_schedule("tick", ports)
    assert resumed.state == "active" and resumed.next_fire == T0 + timedelta(seconds=360)
    assert fire_due(ports)[0] == []  # the ticks of the pause are not started
    clock.advance(60)
    assert [e.schedule_tick for e in fire_due(ports)[0]] == [T0 + timedelta(seconds=360)]


def test_trigger_starts_one_execution_now_even_when_paused(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports)
    pause_schedule("tick", ports)
    clock.advance(12.3456)
    execution = trigger_schedule("tick", ports)
    assert execution.to_json()["schedule"] == {"name": "tick", "tick": "2031-01-06T08:00:12.345Z"}
    assert describe_schedule("tick", ports)["recent"][0]["outcome"] == "triggered"
    clock.advance(1)
    assert trigger_schedule("tick", ports).id != execution.id


def test_bad_schedules_are_refused_with_the_field_named(quiet, clock):
    ports = ports_of(quiet, clock)
    for document, field in (
        ({"name": "x", "workflow": "nope", "every_s": 5}, "workflow"),
        ({"name": "x", "workflow": "report", "version": 9, "every_s": 5}, "version"),
        ({"name": "x", "workflow": "report", "cron": "99 * * * *"}, "cron"),
        ({"name": "x", "workflow": "report", "cron": "0 * * * *", "timezone": "Nowhere/Land"}, "timezone"),
    ):
        with pytest.raises(ValidationError) as caught:
            create_schedule(document, ports)
        assert [p.location for p in caught.value.problems] == [field]
    every(ports)
    with pytest.raises(Conflict, match="schedule 'tick' already exists"):
        every(ports)
    delete_schedule("tick", ports)
    with pytest.raises(NotFound):
        describe_schedule("tick", ports)
    with pytest.raises(NotFound):
        pause_schedule("tick", ports)


def test_a_deleted_workflow_skips_its_ticks_with_the_reason(quiet, clock):
    ports = ports_of(quiet, clock)
    every(ports, version=1)
    quiet.delete_workflow("report", 1)
    clock.advance(60)
    counts = TickCounts()
    assert fire_due(ports, counts)[0] == [] and counts.skipped == 1
    recent = describe_schedule("tick", ports)["recent"]
    assert recent[0]["outcome"] == "skipped" and "was deleted" in recent[0]["reason"]


def test_an_engine_with_workers_fires_and_runs_its_schedules(store_url, registry):
    registry.register("report", lambda ctx: {"day": ctx.input.get("day")})
    with cerebelum.Engine(store_url, handlers=registry, workers=2) as engine:
        engine.create_workflow(definition("report", {"make": fn("report")}))
        assert engine.host.calendar is not None
        ports = SchedulePorts(engine.store, engine.host.calendar, engine.clock, engine.ids)
        create_schedule({"name": "fast", "workflow": "report", "every_s": 1, "input": {"day": 7}}, ports)
        engine.start_worker()
        deadline = time.monotonic() + 15
        done: list[cerebelum.Execution] = []
        while time.monotonic() < deadline and not done:
            done = [e for e in scheduled(engine, "fast") if e.status == "completed"]
            time.sleep(0.1)
        assert done and done[0].output == {"day": 7}
        assert engine.host.schedule_ticks().started >= 1


def test_an_exported_history_keeps_the_schedule_tick(quiet, clock, tmp_path):
    import json

    from cerebelum.application.histories import bundle_from_text, export_history, import_history

    ports = ports_of(quiet, clock)
    every(ports)
    clock.advance(60)
    [execution] = fire_due(ports)[0]
    quiet.cancel(execution.id)  # only an ended execution travels
    text = json.dumps(export_history(quiet.store, execution.id).to_json(clock.now(), "test"))
    with cerebelum.Engine(f"sqlite:///{tmp_path / 'other.db'}", workers=0) as other:
        imported = import_history(other.store, other.ids, other.compiler, bundle_from_text(text, "bundle"))
        assert other.status(imported.id).to_json()["schedule"] == {"name": "tick", "tick": "2031-01-06T08:01:00Z"}

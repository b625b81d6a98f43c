"""Retention (spec section 7): purging finished executions in bounded batches, on
memory, SQLite and PostgreSQL; the periodic purge a worker runs with `retention`."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import cerebelum
from cerebelum.application.retention import parse_duration, purge_executions
from cerebelum.bootstrap import open_store
from cerebelum.domain.errors import ValidationError
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution, ExecutionStatus
from cerebelum.domain.ports import PurgeSelection, Store
from cerebelum.domain.workflow import StoredWorkflow, content_digest

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEFINITION = {"name": "kept", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "h"}}}, "edges": []}


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        pass


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def _workflow(name: str) -> StoredWorkflow:
    definition = {**DEFINITION, "name": name}
    return StoredWorkflow(f"wf-{name}", name, 1, definition, content_digest(definition), NOW - timedelta(days=400))


def _put(store: Store, n: int, status: str, ended_days_ago: float | None, workflow: str = "kept", events: int = 2) -> list[str]:
    """`n` executions in `status` that ended that many days ago (None: not ended), each with `events` events."""
    ids = []
    stored = _workflow(workflow)
    for _ in range(n):
        execution_id = f"exec-{uuid.uuid4()}"
        ended = NOW - timedelta(days=ended_days_ago) if ended_days_ago is not None else None
        created = (ended or NOW) - timedelta(hours=1)
        row = Execution(execution_id, workflow, 1, status, {"n": 1}, 7, False, created, started_at=created, completed_at=ended)
        row = row.evolve(last_sequence=events - 1)
        log = [
            Event(str(uuid.uuid4()), execution_id, i, "execution_started" if i == 0 else "checkpoint_created", None, {}, created)
            for i in range(events)
        ]
        store.executions.import_history(row, log, stored)  # the port stores any row as given
        ids.append(execution_id)
    return ids


def _present(store: Store, ids: list[str]) -> set[str]:
    rows = {e.id for e in store.executions.list(limit=100_000)}
    return {i for i in ids if i in rows}


def test_purge_deletes_only_terminal_executions_older_than_the_cutoff_with_their_events(store: Store) -> None:
    old_done = _put(store, 3, ExecutionStatus.COMPLETED, 40)
    old_failed = _put(store, 2, ExecutionStatus.FAILED, 31)
    recent = _put(store, 2, ExecutionStatus.COMPLETED, 10)
    # rows that are not terminal, even with an (impossible) old completed_at, are never purged
    live = [
        *_put(store, 1, ExecutionStatus.RUNNING, 90),
        *_put(store, 1, ExecutionStatus.PAUSED, 90),
        *_put(store, 1, ExecutionStatus.PENDING, None),
    ]
    result = purge_executions(store.executions, FixedClock(NOW), parse_duration("30d"))
    assert result.count == 5 and not result.dry_run
    assert _present(store, old_done + old_failed) == set()
    assert _present(store, recent + live) == set(recent + live)
    for gone in old_done + old_failed:
        assert store.events.read(gone) == []  # events and checkpoints went with the row
    for kept in recent + live:
        assert len(store.events.read(kept)) == 2
    assert purge_executions(store.executions, FixedClock(NOW), timedelta(days=30)).count == 0


def test_purge_filters_by_status_and_workflow(store: Store) -> None:
    done = _put(store, 2, ExecutionStatus.COMPLETED, 50)
    failed = _put(store, 2, ExecutionStatus.FAILED, 50)
    other = _put(store, 2, ExecutionStatus.FAILED, 50, workflow="other")
    clock = FixedClock(NOW)
    assert purge_executions(store.executions, clock, timedelta(days=1), ["failed"], "kept").count == 2
    assert _present(store, done + failed + other) == set(done + other)
    assert purge_executions(store.executions, clock, timedelta(days=1), ["completed"]).count == 2
    assert _present(store, done + other) == set(other)
    assert purge_executions(store.executions, clock, timedelta(days=1), None, "other").count == 2
    assert _present(store, other) == set()


def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    ids = _put(store, 4, ExecutionStatus.COMPLETED, 5)
    _put(store, 1, ExecutionStatus.RUNNING, 5)
    result = purge_executions(store.executions, FixedClock(NOW), timedelta(days=1), dry_run=True)
    assert (result.count, result.dry_run) == (4, True)
    assert _present(store, ids) == set(ids)
    assert result.to_json()["ended_before"] == "2026-05-31T12:00:00.000Z"


def test_a_purge_larger_than_one_batch_runs_in_several_transactions(store: Store) -> None:
    ids = _put(store, 23, ExecutionStatus.COMPLETED, 100, events=1)
    keep = _put(store, 2, ExecutionStatus.RUNNING, 100, events=1)
    result = purge_executions(store.executions, FixedClock(NOW), timedelta(days=1), batch_size=5)
    assert result.count == 23
    assert result.batches == 5  # 5 + 5 + 5 + 5 + 3: the last short batch ends it
    assert _present(store, ids + keep) == set(keep)
    # one batch alone deletes at most its size
    more = _put(store, 7, ExecutionStatus.FAILED, 100, events=1)
    assert store.executions.purge_batch(PurgeSelection(NOW), 3) == 3
    assert len(_present(store, more)) == 4


def test_bad_settings_are_located_errors() -> None:
    for text in ("", "30", "d", "3x", "-1d", "1.5h", "30 days"):
        with pytest.raises(ValidationError) as caught:
            parse_duration(text, "--older-than")
        assert caught.value.problems[0].location == "--older-than"
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("45s") == timedelta(seconds=45)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(ValidationError) as caught:
        purge_executions(open_store("memory://").executions, FixedClock(NOW), timedelta(days=1), ["running"])
    assert caught.value.problems[0].location == "--status"
    with pytest.raises(ValidationError) as caught:
        cerebelum.Engine("memory://", workers=0, retention="soon")
    assert caught.value.problems[0].location == "retention"


def test_a_worker_with_retention_purges_what_ended_longer_ago(sql_url: str, registry: cerebelum.HandlerRegistry) -> None:
    registry.register("h", lambda ctx: {"ok": True})
    with cerebelum.Engine(sql_url, workers=0, handlers=registry) as maker:
        old = [maker.run(DEFINITION, {"i": i}).id for i in range(3)]
    time.sleep(1.1)  # they ended more than the 1 s retention ago
    with cerebelum.Engine(sql_url, workers=2, handlers=registry, retention="1s") as worker:
        worker.host.settings.retention_every_s = 0.2
        worker.start_worker()
        fresh = worker.execute("kept", {"i": 99})
        assert worker.wait(fresh.id, timeout=30).status == "completed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(e.id in old for e in worker.executions(limit=100)):
            time.sleep(0.05)
        remaining = {e.id for e in worker.executions(limit=100)}
    assert not remaining & set(old), "the worker purged the executions that ended more than 1 s ago"


def test_a_purge_racing_with_running_work_deletes_only_finished_ones(sql_url: str, registry: cerebelum.HandlerRegistry) -> None:
    """Executions finish while a purge with no age limit runs again and again:
    every execution that disappears had finished, and every one that stays
    has its whole log."""

    def slow(ctx: cerebelum.StepContext) -> dict[str, int]:
        time.sleep(0.01)
        return {"n": ctx.data.get("n", 0) + 1}

    registry.register("h", slow)
    definition = {
        **DEFINITION,
        "nodes": {"a": {"type": "function", "config": {"handler": "h"}}, "b": {"type": "function", "config": {"handler": "h"}}},
        "edges": [{"from": "a", "to": "b"}],
    }
    completed: set[str] = set()
    stop = threading.Event()
    purged = []
    with cerebelum.Engine(sql_url, workers=4, handlers=registry) as engine:
        engine.subscribe(lambda event: completed.add(event.execution_id) if event.type == "execution_completed" else None)

        def purge_again_and_again() -> None:
            while not stop.is_set():
                purged.append(purge_executions(engine.store.executions, engine.clock, timedelta(0), batch_size=3).count)

        purger = threading.Thread(target=purge_again_and_again)
        purger.start()
        try:
            engine.start_worker()
            ids = [engine.execute(definition, {"n": i}).id for i in range(30)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not set(ids) <= completed:
                time.sleep(0.05)
        finally:
            stop.set()
            purger.join()
        stays = {e.id: e for e in engine.executions(limit=1000)}
        for execution_id, execution in stays.items():
            assert len(engine.events(execution_id)) == execution.last_sequence + 1
    assert set(ids) <= completed, "every execution finished: none was deleted while it ran"
    gone = set(ids) - set(stays)
    assert gone and gone <= completed
    assert sum(purged) == len(gone)



def test_two_purges_at_once_share_the_work_and_leave_nothing(sql_url: str) -> None:
    """Two workers with a retention (or a worker and the CLI) purge together: each
    stops only when nothing is left, never after a batch the other one shortened."""
    with cerebelum.Engine(sql_url, workers=0) as engine:
        store = engine.store
        ids = _put(store, 240, ExecutionStatus.COMPLETED, 100, events=1)
        counts: list[int] = []

        def purge() -> None:
            counts.append(purge_executions(store.executions, FixedClock(NOW), timedelta(days=1), batch_size=10).count)

        threads = [threading.Thread(target=purge) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(counts) == 240
        assert _present(store, ids) == set()
        assert store.executions.count_purgeable(PurgeSelection(NOW)) == 0

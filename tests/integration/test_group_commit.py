"""Group commit on every backend: `append_many` checks each append on its own,
writes the accepted ones together and undoes nothing for a refused one; the
GroupCommit of a loop batches concurrent runners without changing any result."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.conftest import empty_pg
from tests.helpers import chain, definition, fn

import cerebelum
from cerebelum.application.group_commit import GroupCommit
from cerebelum.bootstrap import open_store
from cerebelum.domain.errors import CerebelumError, Conflict, LeaseLost, NotFound, StoreUnavailable
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.domain.ports import Append, AppendResult, Store

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()  # type: ignore[attr-defined]


BatchWrite = Callable[[list[Append]], list[AppendResult]]


def batch_writers(store: Store) -> list[BatchWrite]:
    """Every way this store writes a batch: from a thread, and (PostgreSQL) from the loop."""
    found: list[BatchWrite] = [store.events.append_many]
    if store.events.loop_writer() is not None:
        found.append(lambda batch: asyncio.run(in_loop(store, batch)))
    return found


async def in_loop(store: Store, batch: list[Append]) -> list[AppendResult]:
    writer = store.events.loop_writer()
    assert writer is not None
    try:
        return await writer.append_many(batch)
    finally:
        await writer.close()


def new_execution() -> Execution:
    return Execution(f"exec-{uuid.uuid4()}", "wf", 1, "pending", {"n": 1}, 7, False, T0)


def events(execution: Execution, first: int, count: int) -> list[Event]:
    return [
        Event(str(uuid.uuid4()), execution.id, n, "node_started", f"n{n}", {"n": n, "ok": [True, None]}, T0 + timedelta(n))
        for n in range(first, first + count)
    ]


def test_each_append_of_a_batch_is_judged_alone(store: Store) -> None:
    for append_many in batch_writers(store):
        judged_alone(store, append_many)


def judged_alone(store: Store, append_many: BatchWrite) -> None:
    leased, free, taken, gap = (new_execution() for _ in range(4))
    lease = store.queue.create_leased(leased, "me", 30)
    for execution in (free, taken, gap):
        store.executions.create(execution)
    store.events.append(taken.evolve(status="running", last_sequence=1), events(taken, 0, 2))
    stolen = type(lease)(lease.execution_id, lease.owner, "not-the-token", lease.expires_at)
    ghost = new_execution()

    batch = [
        Append(free.evolve(status="running", started_at=T0, last_sequence=2), events(free, 0, 3)),
        Append(leased.evolve(status="running", last_sequence=0), events(leased, 0, 1), stolen),
        Append(taken.evolve(status="failed", last_sequence=2), events(taken, 1, 2)),
        Append(gap.evolve(status="running", last_sequence=1), [events(gap, 0, 1)[0], events(gap, 5, 1)[0]]),
        Append(ghost.evolve(last_sequence=0), events(ghost, 0, 1)),
        Append(leased.evolve(status="completed", output={"ok": 1}, last_sequence=0), events(leased, 0, 1), lease),
    ]
    results: list[AppendResult] = append_many(batch)

    assert results[0] is None and results[5] is None
    assert isinstance(results[1], LeaseLost)
    assert isinstance(results[2], Conflict) and taken.id in str(results[2])
    assert isinstance(results[3], Conflict)
    assert isinstance(results[4], NotFound)
    # accepted: durable, byte for byte; refused: nothing written
    assert store.events.read(free.id) == batch[0].events
    assert store.executions.get(free.id) == batch[0].execution
    assert store.events.read(leased.id) == batch[5].events
    done = store.executions.get(leased.id)
    assert done.status == "completed" and done.output == {"ok": 1}
    assert [e.sequence for e in store.events.read(taken.id)] == [0, 1]
    assert store.executions.get(taken.id).status == "running"
    assert store.events.read(gap.id) == []
    # a terminal append gives the lease back: the execution can be claimed by nobody, and its control is cleared
    assert store.queue.claim_one(leased.id, "other", 30) is None


def test_consumed_control_is_cleared_only_if_unchanged(store: Store) -> None:
    a, b = new_execution(), new_execution()
    leases = [store.queue.create_leased(x, "me", 30) for x in (a, b)]
    store.queue.request(a.id, "pause")
    store.queue.request(b.id, "cancel")
    results = store.events.append_many(
        [
            Append(a.evolve(status="running", last_sequence=0), events(a, 0, 1), leases[0], "pause"),
            Append(b.evolve(status="running", last_sequence=0), events(b, 0, 1), leases[1], "pause"),
        ]
    )
    assert results == [None, "cancel"]


class SlowStore:
    """A fake EventStore that records the batches it is given."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def append_many(self, appends: list[Append]) -> list[AppendResult]:
        self.batches.append(len(appends))
        if self.fail:
            raise StoreUnavailable("down")
        return [Conflict("taken") if a.execution.id.endswith("bad") else None for a in appends]


async def test_group_commit_batches_what_arrives_while_a_batch_is_written() -> None:
    fake = SlowStore()

    async def in_db(func, *args):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.02)  # a slow commit: the others queue up meanwhile
        return func(*args)

    group = GroupCommit(lambda batch: in_db(fake.append_many, batch))
    appends = [Append(new_execution().evolve(id=f"exec-{n}{'bad' if n == 7 else ''}"), []) for n in range(20)]
    results = await asyncio.gather(*(group.append(a) for a in appends), return_exceptions=True)
    assert fake.batches == [1, 19]  # the first alone (no added wait), the rest together
    assert [type(r).__name__ for r in results] == ["NoneType"] * 7 + ["Conflict"] + ["NoneType"] * 12
    assert (group.appends, group.batches) == (20, 2)


async def test_group_commit_failure_reaches_every_waiter() -> None:
    async def in_db(func, *args):  # type: ignore[no-untyped-def]
        return func(*args)

    fake = SlowStore(fail=True)
    group = GroupCommit(lambda batch: in_db(fake.append_many, batch))
    results = await asyncio.gather(*(group.append(Append(new_execution(), [])) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert group.writing == 0 and not group.pending


def test_many_concurrent_executions_share_commits(engine: cerebelum.Engine, registry: cerebelum.HandlerRegistry) -> None:
    """End to end: 40 executions in flight in one loop need fewer batches than appends,
    and every log is still contiguous and complete."""
    registry.register("step", lambda data: {"ok": True})
    steps = [f"s{i}" for i in range(5)]
    engine.create_workflow(definition("grouped", {s: fn("step") for s in steps}, chain(*steps)))

    async def main() -> list[Execution]:
        runs = await asyncio.gather(*(engine.run_async("grouped", {"i": i}) for i in range(40)))
        commits = engine.host.services().commits
        assert commits.appends > commits.batches, (commits.appends, commits.batches)
        await engine.close_async()
        return list(runs)

    for execution in asyncio.run(main()):
        assert execution.status == "completed", execution.error
        log = engine.events(execution.id)
        assert [e.sequence for e in log] == list(range(len(log)))
        assert [e.node_id for e in log if e.type == "node_completed"] == steps


# -- one append's failure stays its own (review of the batch statement) ----------


def event_with(execution: Execution, payload: dict[str, Any]) -> Event:
    return Event(str(uuid.uuid4()), execution.id, 0, "node_started", "n0", payload, T0)


def test_a_value_the_database_cannot_store_fails_only_its_append(store: Store, store_url: str) -> None:
    for append_many in batch_writers(store):
        fails_only_its_append(store, store_url, append_many)


def fails_only_its_append(store: Store, store_url: str, append_many: BatchWrite) -> None:
    good, nul, unjsonable = new_execution(), new_execution(), new_execution()
    for execution in (good, nul, unjsonable):
        store.executions.create(execution)
    batch = [
        Append(good.evolve(status="running", last_sequence=0), events(good, 0, 1)),
        Append(nul.evolve(status="running", last_sequence=0), [event_with(nul, {"text": "a\x00b"})]),
        Append(unjsonable.evolve(status="running", last_sequence=0), [event_with(unjsonable, {"a set": {1, 2}})]),
    ]
    results = append_many(batch)
    assert results[0] is None and store.events.read(good.id) == batch[0].events
    if store_url.startswith("postgresql"):  # jsonb has no NUL; SQLite and memory keep it
        assert isinstance(results[1], CerebelumError) and store.events.read(nul.id) == []
    else:
        assert results[1] is None and store.events.read(nul.id) == batch[1].events
    if not store_url.startswith("memory"):
        assert isinstance(results[2], CerebelumError) and unjsonable.id in str(results[2])
        assert store.events.read(unjsonable.id) == []
    else:  # the memory store keeps Python objects as they are
        assert results[2] is None and store.events.read(unjsonable.id) == batch[2].events


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    empty_pg(pg_url)
    opened = open_store(pg_url)
    yield opened
    opened.close()  # type: ignore[attr-defined]


def until_waiting_on_a_lock(other: psycopg.Connection[Any]) -> None:
    """Until another backend of this database waits on a lock (seen from `other`'s own session)."""
    deadline = time.monotonic() + 10
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    with psycopg.connect(other.info.dsn, autocommit=True) as watcher:
        while not watcher.execute(query).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the append never waited on the row lock"
            time.sleep(0.02)


@pytest.mark.parametrize("via", ["thread", "loop"])
def test_a_lease_taken_while_the_append_waits_is_lease_lost(pg_store: Store, pg_url: str, via: str) -> None:
    """The takeover commits while the append waits for the row's lock: the append
    is refused (nothing written) and says why: LeaseLost, not Conflict."""
    execution = new_execution()
    lease = pg_store.queue.create_leased(execution, "me", 30)
    outcome: dict[str, Any] = {}
    with psycopg.connect(pg_url) as other:
        other.execute("UPDATE executions SET lease_token = 'taken', claimed_by = 'other' WHERE id = %s", (execution.id,))

        def append() -> None:
            batch = [Append(execution.evolve(status="running", last_sequence=0), events(execution, 0, 1), lease)]
            try:
                outcome["error"] = (
                    pg_store.events.append_many(batch)[0] if via == "thread" else asyncio.run(in_loop(pg_store, batch))[0]
                )
            except Exception as exc:
                outcome["raised"] = exc

        waiting = threading.Thread(target=append)
        waiting.start()
        until_waiting_on_a_lock(other)  # else the takeover would simply come first
        other.commit()
        waiting.join(10)
    assert isinstance(outcome.get("error"), LeaseLost), outcome
    assert pg_store.events.read(execution.id) == []


@pytest.mark.parametrize("via", ["thread", "loop"])
def test_heartbeats_and_append_batches_do_not_deadlock(pg_store: Store, via: str) -> None:
    """Renewals and batches over the same 40 executions, at once, in shuffled
    orders (before rows were locked in id order: ~1 deadlock a second)."""
    executions = [new_execution() for _ in range(40)]
    leases = [pg_store.queue.create_leased(x, "me", 30) for x in executions]
    failures: list[str] = []
    done = Counter[str]()
    stop = time.monotonic() + 4

    def recorded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:  # an assert or error in a thread would only end the thread: record it
            try:
                work()
            except BaseException as exc:
                failures.append(f"{work.__name__}: {exc!r}")

        return run

    def renew() -> None:
        while time.monotonic() < stop:
            try:
                held = pg_store.queue.renew(random.sample(leases, len(leases)), 30)
            except Exception as exc:
                failures.append(f"renew: {exc!r}")
            else:
                done["renewals"] += 1
                if len(held) != len(leases):
                    failures.append(f"renew kept {len(held)} of {len(leases)} leases")

    def append() -> None:
        asyncio.run(append_in_loop()) if via == "loop" else append_batches(pg_store.events.append_many)

    def append_batches(append_many: BatchWrite) -> None:
        while time.monotonic() < stop:
            order = random.sample(range(len(executions)), len(executions))
            batch = [Append(executions[i].evolve(status="running"), [], leases[i]) for i in order]
            try:
                results = append_many(batch)
            except Exception as exc:
                failures.append(f"append: {exc!r}")
            else:
                done["batches"] += 1
                failures.extend(f"append refused: {r!r}" for r in results if r is not None)

    async def append_in_loop() -> None:  # one connection for the whole run, as a loop's group commit has
        writer = pg_store.events.loop_writer()
        assert writer is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, append_batches, lambda batch: asyncio.run_coroutine_threadsafe(writer.append_many(batch), loop).result()
            )
        finally:
            await writer.close()

    threads = [threading.Thread(target=recorded(renew)), threading.Thread(target=recorded(append))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert done["renewals"] > 0 and done["batches"] > 0, done


def two_created(store: Store) -> tuple[Execution, Execution]:
    one, two = new_execution(), new_execution()
    for x in (one, two):
        store.executions.create(x)
    return one, two


def first_append(x: Execution) -> list[Append]:
    return [Append(x.evolve(status="running", last_sequence=0), events(x, 0, 1))]


def test_the_loop_writer_replaces_a_connection_the_server_dropped(pg_store: Store, pg_url: str) -> None:
    """A killed backend (a restart, an idle timeout): that batch fails as StoreUnavailable
    (the runner retries it), and the next one is written on a new connection."""
    one, two = two_created(pg_store)

    async def main() -> None:
        writer = pg_store.events.loop_writer()
        assert writer is not None
        try:
            assert await writer.append_many(first_append(one)) == [None]
            pid = writer._connection.info.backend_pid  # type: ignore[attr-defined]
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            batch = first_append(two)
            with pytest.raises(StoreUnavailable):
                await writer.append_many(batch)
            assert await writer.append_many(batch) == [None]
            assert writer._connection.info.backend_pid != pid  # type: ignore[attr-defined]
        finally:
            await writer.close()

    asyncio.run(main())
    assert [e.sequence for e in pg_store.events.read(two.id)] == [0]


def test_a_cancelled_batch_leaves_no_half_used_connection(pg_store: Store, pg_url: str) -> None:
    """A batch cancelled while its statement runs (the loop shutting down): the connection
    is not reused in an unknown state, and the next batch is written normally."""
    one, two = two_created(pg_store)

    async def main() -> None:
        writer = pg_store.events.loop_writer()
        assert writer is not None
        try:
            await writer.append_many(first_append(one))
            with psycopg.connect(pg_url) as locker:  # holds two's row: the batch's statement waits on it
                locker.execute("SELECT 1 FROM executions WHERE id = %s FOR UPDATE", (two.id,))
                task = asyncio.ensure_future(writer.append_many(first_append(two)))
                await asyncio.sleep(0.3)
                assert not task.done()  # blocked inside its statement
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StoreUnavailable):
                    await task
                locker.rollback()
            connection = writer._connection  # type: ignore[attr-defined]
            # psycopg cancels the statement on the server and drains it: the connection is
            # clean (idle) and kept, or it was dropped; never reused mid-statement.
            assert connection is None or connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert pg_store.events.read(two.id) == []  # the cancelled statement wrote nothing
            assert await writer.append_many(first_append(two)) == [None]
        finally:
            await writer.close()

    asyncio.run(main())
    assert [e.sequence for e in pg_store.events.read(two.id)] == [0]

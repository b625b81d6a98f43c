"""The thread hand-off and the group commit's own bookkeeping (no database)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from cerebelum.application.group_commit import GroupCommit
from cerebelum.application.handoff import Threads, in_thread
from cerebelum.domain.execution import Execution
from cerebelum.domain.ports import Append, AppendResult


def test_results_and_exceptions_come_back_to_the_loop() -> None:
    pool = Threads(2, "t")

    def boom() -> None:
        raise ValueError("no")

    async def main() -> None:
        assert await in_thread(pool, lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ValueError, match="no"):
            await in_thread(pool, boom)
        assert await in_thread(pool, threading.current_thread) is not threading.current_thread()

    asyncio.run(main())
    pool.shutdown()


def test_a_call_never_waits_behind_a_blocked_one() -> None:
    """A thread is added when every thread is busy (handlers may block for long)."""
    pool = Threads(4, "t")
    release = threading.Event()

    async def main() -> None:
        blocked = [in_thread(pool, release.wait, 10) for _ in range(3)]
        began = time.monotonic()
        assert await in_thread(pool, lambda: "quick") == "quick"
        assert time.monotonic() - began < 2
        release.set()
        assert await asyncio.gather(*blocked) == [True, True, True]

    asyncio.run(main())
    pool.shutdown()


def test_a_call_cancelled_while_queued_never_runs() -> None:
    """As with an executor: an attempt given up on (a time-out, a cancel) must not start later."""
    pool = Threads(1, "t")
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        busy = in_thread(pool, release.wait, 10)  # the pool's only thread
        queued = in_thread(pool, ran.append, "late")
        await asyncio.sleep(0.05)
        queued.cancel()
        release.set()
        await busy
        assert await in_thread(pool, lambda: "after") == "after"

    asyncio.run(main())
    pool.shutdown()
    assert ran == []


def test_shutdown_runs_what_is_queued_then_refuses() -> None:
    pool = Threads(1, "t")
    done: list[int] = []
    for n in range(5):
        pool.submit(lambda n=n: done.append(n))
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def execution(n: int) -> Execution:
    return Execution(f"exec-{n}", "wf", 1, "running", {}, 1, False, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_batch_that_cannot_even_start_fails_every_waiter_and_the_next_batch_still_goes() -> None:
    """The write function raising at once (its pool shut down): the waiters of that
    batch get the error, nothing is left counted as in flight, and the appends that
    queued meanwhile, and later ones, are still written (before: every later append
    of the loop waited forever)."""
    calls: list[int] = []

    async def later(batch: list[Append]) -> list[AppendResult]:
        return [None] * len(batch)

    def write(batch: list[Append]) -> asyncio.Future[list[AppendResult]]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return asyncio.ensure_future(later(batch))

    async def main() -> None:
        group = GroupCommit(write)
        appends = (group.append(Append(execution(n), [])) for n in range(3))
        results = await asyncio.wait_for(asyncio.gather(*appends, return_exceptions=True), 5)
        assert [type(r).__name__ for r in results] == ["RuntimeError", "NoneType", "NoneType"]
        assert group.writing == 0 and not group.pending
        assert await asyncio.wait_for(group.append(Append(execution(9), [])), 5) is None

    asyncio.run(main())
    assert calls == [1, 2, 1]  # the first alone (it failed), the two that queued meanwhile, the last

"""Group commit: the appends of every execution running in one event loop share
transactions.

A runner hands its append over and waits. While a batch is being written,
the appends that arrive queue up and go, all together, in the next one: one
commit for many steps when many executions are busy, and no added wait when
only one is (a lone append is written at once). Nothing is acknowledged
before its batch is committed (as durable as the database makes a commit:
on SQLite in WAL mode with synchronous=NORMAL, a process crash loses
nothing, a power cut may lose the last commits), and each append is still
checked on its own (lease, sequence), so no guarantee is weakened.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from cerebelum.domain.ports import Append, AppendResult

# Writes one batch: `EventStore.append_many` in the database thread, or a LoopWriter's.
WriteBatch = Callable[[list[Append]], Awaitable[list[AppendResult]]]
MAX_BATCH = 256


class GroupCommit:
    def __init__(self, write: WriteBatch, writers: int = 1, max_batch: int = MAX_BATCH) -> None:
        self.write = write
        self.writers = writers  # batches in flight at once
        self.max_batch = max_batch
        self.pending: list[tuple[Append, asyncio.Future[str | None]]] = []
        self.writing = 0
        self.writes: set[asyncio.Future[Any]] = set()  # batches being written
        self.batches = 0  # for the benchmarks: appends / batches is the grouping achieved
        self.appends = 0

    async def append(self, append: Append) -> str | None:
        """Write `append` (in some batch); return its pending control request or raise its refusal."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.pending.append((append, future))
        if self.writing < self.writers:
            self._write_next()
        return await future

    def _write_next(self) -> None:
        batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        self.writing += 1
        written: asyncio.Future[list[AppendResult]]
        try:
            written = asyncio.ensure_future(self.write([append for append, _ in batch]))  # noqa: RUF006 - kept in self.writes
        except Exception as exc:  # it could not even start (its thread pool is shut down, say)
            written = asyncio.get_running_loop().create_future()
            written.set_exception(exc)
        self.writes.add(written)
        written.add_done_callback(lambda done: self._written(batch, done))

    def _written(self, batch: list[tuple[Append, asyncio.Future[str | None]]], done: asyncio.Future[Any]) -> None:
        """Hand each waiter its own result; then the next batch, if appends queued up meanwhile."""
        self.writes.discard(done)
        self.writing -= 1
        try:
            if done.cancelled():  # the loop is going away
                for _, future in batch:
                    future.cancel()
                return
            results: list[AppendResult] = done.result()
            self.batches += 1
            self.appends += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its runner was cancelled meanwhile
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as failure:  # the database itself failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(_own_copy(failure))  # each runner raises, and logs, an exception of its own
            if not isinstance(failure, Exception):
                raise
        finally:
            if self.pending and self.writing < self.writers:
                self._write_next()


def _own_copy(exc: BaseException) -> BaseException:
    try:
        twin = copy.copy(exc)
    except Exception:
        return exc
    twin.__cause__ = exc
    return twin

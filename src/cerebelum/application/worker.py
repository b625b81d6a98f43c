"""The supervised worker pool: claims executions from the database queue and
runs each as an asyncio task, with leases kept alive by a heartbeat.

Durable state lives in the database, not here: a worker killed at any
instant loses nothing, because another one claims the execution once its
lease lapses and carries on from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cerebelum.application.execute_workflow import Unloadable
from cerebelum.application.runner import ExecutionRunner
from cerebelum.domain.execution import Execution, Lease
from cerebelum.domain.ports import ExecutionQueue

log = logging.getLogger("cerebelum.worker")
DatabaseCall = Callable[..., Awaitable[Any]]
HEALTHY_RUN_S = 0.5  # a loop that ran this long before crashing restarts without backoff


def worker_id() -> str:
    """host:pid:random, so a lease names who holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def supervise(name: str, loop: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Keep `loop` running until `stop`: restart it with backoff when it crashes."""
    delay = 0.1
    while not stop.is_set():
        began = time.monotonic()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() - began >= HEALTHY_RUN_S:
                delay = 0.1  # it had been healthy: start the backoff over
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)


@dataclass
class LeaseKeeper:
    """Renews the leases of the runners in this process; tells a runner when its
    lease is lost or a pause/resume/cancel was requested."""

    queue: ExecutionQueue
    call: DatabaseCall  # runs a store call in a database thread
    ttl: float
    held: dict[str, tuple[Lease, ExecutionRunner]] = field(default_factory=dict)

    @property
    def interval(self) -> float:
        return max(0.05, min(self.ttl / 3, 2.0))

    def add(self, runner: ExecutionRunner) -> None:
        assert runner.lease is not None
        self.held[runner.lease.token] = (runner.lease, runner)

    def remove(self, runner: ExecutionRunner) -> None:
        if runner.lease is not None:
            self.held.pop(runner.lease.token, None)

    async def beat(self) -> None:
        if not self.held:
            return
        sent = dict(self.held)  # runners added while we wait were not asked about
        renewed = await self.call(self.queue.renew, [lease for lease, _ in sent.values()], self.ttl)
        kept = {lease.token: (control, offered) for lease, control, offered in renewed}
        for token, (lease, runner) in sent.items():
            if token in kept:
                control, offered = kept[token]
                runner.poke(control)
                runner.poke_inbox(offered)
            elif token in self.held and not runner.state.is_terminal:  # finished runners let go of theirs
                log.warning("lease on %s lost", lease.execution_id)
                self.held.pop(token, None)
                runner.lose()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            await self.beat()


class Worker:
    """`concurrency` executions at a time (of `queues` only, if given); stops
    claiming on `stop`, then hands back what it holds after in-flight handlers finish."""

    def __init__(
        self,
        queue: ExecutionQueue,
        call: DatabaseCall,
        make_runner: Callable[[Execution, Lease], Awaitable[ExecutionRunner]],
        keeper: LeaseKeeper,
        owner: str,
        concurrency: int = 8,
        poll_interval: float = 0.5,
        queues: tuple[str, ...] | None = None,
        code_version: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.code_version = code_version  # claims take pinned executions of this code version only
        self.call = call
        self.make_runner = make_runner
        self.keeper = keeper
        self.owner = owner
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.queues = queues  # serve only these queues (None: all)
        self.wakeup = asyncio.Event()  # set on work enqueued here or notified by the database
        self.active: dict[str, asyncio.Task[None]] = {}
        self.runners: dict[str, ExecutionRunner] = {}
        self.completed = 0
        self.left_for_handler: dict[str, int] = {}  # executions handed back for lack of a handler, per handler

    def notify(self) -> None:
        """New work may be claimable (call from the worker's loop)."""
        self.wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run until `stop`; then stop every runner gracefully.

        The lease heartbeat is the keeper's, run beside this by its owner.
        """
        try:
            await supervise("claimer", lambda: self.claim_loop(stop), stop)
        finally:
            for runner in self.runners.values():
                runner.stop()
            if self.active:
                await asyncio.gather(*self.active.values(), return_exceptions=True)

    async def claim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self.concurrency - len(self.active)
            version = self.code_version()
            claim = (self.queue.claim, self.owner, free, self.keeper.ttl, version, self.queues)
            claimed = await self.call(*claim) if free > 0 else []
            for execution, lease in claimed:
                self.active[execution.id] = asyncio.ensure_future(self.drive(execution, lease))
            if len(claimed) == free and free > 0:
                continue  # there may be more waiting
            self.wakeup.clear()
            waiters = [asyncio.ensure_future(self.wakeup.wait()), asyncio.ensure_future(stop.wait())]
            try:
                pending = [*waiters, *self.active.values()]
                await asyncio.wait(pending, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    def missing_handler(self, handler: str, execution_id: str) -> None:
        if handler not in self.left_for_handler:
            log.warning(
                "handler '%s' is not registered here: execution %s (and any other needing it) is left for a worker that has it",
                handler,
                execution_id,
            )
        self.left_for_handler[handler] = self.left_for_handler.get(handler, 0) + 1

    async def drive(self, execution: Execution, lease: Lease) -> None:
        runner: ExecutionRunner | None = None
        try:
            runner = await self.make_runner(execution, lease)
            self.runners[execution.id] = runner
            self.keeper.add(runner)
            await runner.run()
            self.completed += 1
            if runner.performer.missing is not None:
                self.missing_handler(runner.performer.missing[0], execution.id)
        except asyncio.CancelledError:
            raise
        except Unloadable as exc:
            log.error("%s; paused it (resume it once the cause is fixed)", exc)
        except Exception:
            log.exception("execution %s stopped with an error; its lease will lapse and it will be retried", execution.id)
        finally:
            if runner is not None:
                self.keeper.remove(runner)
            self.runners.pop(execution.id, None)
            self.active.pop(execution.id, None)
            self.wakeup.set()

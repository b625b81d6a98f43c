"""What an Engine runs inside one event loop: the lease heartbeat and,
when asked, a worker pool. Kept apart from the Engine's API surface."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cerebelum.application.group_commit import GroupCommit
from cerebelum.application.worker import LeaseKeeper, Worker, supervise
from cerebelum.domain.ports import LoopWriter


@dataclass
class Runtime:
    keeper: LeaseKeeper
    commits: GroupCommit
    writer: LoopWriter | None = None  # the commits' connection, if they write from the loop
    stop_work: asyncio.Event = field(default_factory=asyncio.Event)  # stop claiming
    stop_beat: asyncio.Event = field(default_factory=asyncio.Event)  # then stop renewing leases
    keeper_task: asyncio.Task[None] | None = None
    worker: Worker | None = None
    worker_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.keeper_task = asyncio.ensure_future(supervise("heartbeat", lambda: self.keeper.run(self.stop_beat), self.stop_beat))

    def start_worker(self, worker: Worker) -> None:
        self.worker = worker
        self.worker_task = asyncio.ensure_future(worker.run(self.stop_work))

    async def shutdown(self) -> None:
        """Graceful: the worker stops claiming and hands back what it holds,
        while the heartbeat keeps its leases alive; then the heartbeat stops."""
        self.stop_work.set()
        if self.worker_task is not None:
            await asyncio.gather(self.worker_task, return_exceptions=True)
        self.stop_beat.set()
        if self.keeper_task is not None:
            await asyncio.gather(self.keeper_task, return_exceptions=True)
        if self.writer is not None:
            while self.commits.writes:  # a batch that ends may start the next one
                await asyncio.gather(*list(self.commits.writes), return_exceptions=True)
            await self.writer.close()

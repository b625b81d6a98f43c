"""The execution host: the one place where a runner is assembled and run.

Fresh runs, recovery by a worker, pause/resume/cancel carried out by hand
and replay all get their compiled definition, their history and their
runner from here. It is built from ports only (store, handlers, compiler,
clock, ids, step scope, thread pools) by the Engine, and it is what the
worker pool and the control use case receive: nothing in `application/`
calls back into the Engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from cerebelum.application.activities import StepScope
from cerebelum.application.changes import QUEUE, ChangeFeed, wait_until_ended, waker
from cerebelum.application.children import Children
from cerebelum.application.code_versions import CodeVersion
from cerebelum.application.execute_workflow import build_runner, check_drift, load_history, resume_state, set_aside
from cerebelum.application.group_commit import GroupCommit
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.handoff import Threads, in_thread
from cerebelum.application.replay_execution import ReplayReport, replay_log
from cerebelum.application.retention import RETENTION_EVERY_S, as_duration, retention_loop
from cerebelum.application.runner import ExecutionRunner
from cerebelum.application.schedules import SchedulePorts, Scheduler, TickCounts
from cerebelum.application.worker import LeaseKeeper, Worker, supervise
from cerebelum.domain.errors import ConfigurationError, Conflict, StoreUnavailable
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease
from cerebelum.domain.ports import Calendar, Clock, ExpressionCompiler, IdSource, LoopWriter, Store
from cerebelum.domain.state import ExecutionState
from cerebelum.domain.validation import read_workflow
from cerebelum.domain.workflow import StoredWorkflow, Workflow

T = TypeVar("T")


@dataclass
class LoopServices:
    """What the host runs inside one event loop: the lease heartbeat, the group
    commit of its runners and, when asked, a worker pool."""

    keeper: LeaseKeeper
    commits: GroupCommit
    writer: LoopWriter | None = None  # the commits' connection, if they write from the loop
    stop_work: asyncio.Event = field(default_factory=asyncio.Event)  # stop claiming
    stop_beat: asyncio.Event = field(default_factory=asyncio.Event)  # then stop renewing leases
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    worker: Worker | None = None
    scheduler: Scheduler | None = None  # fires due schedule ticks wherever a pool runs
    unwatch: Callable[[], None] | None = None  # the pool's queue wake-ups

    def start(self) -> None:
        self.tasks.append(asyncio.ensure_future(supervise("heartbeat", lambda: self.keeper.run(self.stop_beat), self.stop_beat)))

    def start_worker(self, worker: Worker, scheduler: Scheduler) -> None:
        self.worker, self.scheduler = worker, scheduler
        self.tasks.insert(0, asyncio.ensure_future(worker.run(self.stop_work)))
        self.tasks.append(asyncio.ensure_future(supervise("scheduler", lambda: scheduler.run(self.stop_work), self.stop_work)))

    async def shutdown(self) -> None:
        """Graceful: the worker stops claiming and hands back what it holds,
        while the heartbeat keeps its leases alive; then the heartbeat stops."""
        self.stop_work.set()
        if self.unwatch is not None:
            self.unwatch()
        if self.worker is not None:
            await asyncio.gather(self.tasks[0], return_exceptions=True)
        self.stop_beat.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writer is not None:
            while self.commits.writes:  # a batch that ends may start the next one
                await asyncio.gather(*list(self.commits.writes), return_exceptions=True)
            await self.writer.close()


@dataclass
class HostSettings:
    checkpoint_every: int | None = 1000
    lease_ttl: float = 30.0
    poll_interval: float = 0.5
    park_after: float = 2.0  # a worker parks an execution whose next timer is further away
    engine_version: str | None = None
    code_version: CodeVersion | None = None  # this process's (docs/deploys.md)
    retention: timedelta | str | float | None = None  # workers purge executions that ended longer ago (retention.py)
    retention_every_s: float = RETENTION_EVERY_S
    queues: tuple[str, ...] | None = None  # the queues this process's pools serve (None: all)
    schedule_interval: float = 1.0  # the scheduler looks for new, resumed and due schedules at least this often


class ExecutionHost:
    """Runs executions of one store in this process, in any event loop."""

    def __init__(
        self,
        store: Store,
        handlers: HandlerRegistry,
        compiler: ExpressionCompiler,
        clock: Clock,
        ids: IdSource,
        step_scope: StepScope,
        feed: ChangeFeed,
        owner: str,
        settings: HostSettings,
        calendar: Calendar | None = None,
    ) -> None:
        self.store = store
        self.calendar = calendar  # none: this host fires no schedules
        self.handlers = handlers
        self.compiler = compiler
        self.clock = clock
        self.ids = ids
        self.step_scope = step_scope
        self.feed = feed
        self.owner = owner
        self.settings = settings
        self.retention = as_duration(settings.retention)  # ValidationError at once for a bad setting
        self.database_threads = Threads(8, "cerebelum-db")
        self.handler_threads = Threads(32, "cerebelum-step")
        self._compiled: dict[tuple[str, int], Workflow] = {}
        self._compile_lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, LoopServices] = {}
        self.children = Children(self)

    def code_version(self) -> str | None:
        """This process's code version: stamped on what its runners write, and what its claims may take."""
        return self.settings.code_version.current() if self.settings.code_version is not None else None

    def call(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`func(*args)` in a database thread, awaited from the loop."""
        return in_thread(self.database_threads, func, *args)

    # -- definitions: a stored version never changes, so it is compiled once --

    def compiled(self, stored: StoredWorkflow) -> Workflow:
        key = (stored.name, stored.version)
        workflow = self._compiled.get(key)
        if workflow is None:
            workflow = read_workflow(stored.definition, self.compiler)
            with self._compile_lock:
                workflow = self._compiled.setdefault(key, workflow)
        return workflow

    def remember(self, stored: StoredWorkflow, workflow: Workflow) -> None:
        """A definition just compiled elsewhere (on create): no second compilation."""
        with self._compile_lock:
            self._compiled.setdefault((stored.name, stored.version), workflow)

    async def workflow_of(self, execution: Execution) -> Workflow:
        workflow = self._compiled.get((execution.workflow, execution.version))
        if workflow is None:
            stored = await self.call(self.store.workflows.get, execution.workflow, execution.version)
            workflow = await self.call(self.compiled, stored)
        return workflow

    def forget_compiled(self) -> None:
        """For tests that rewrite a stored definition behind the engine's back."""
        with self._compile_lock:
            self._compiled.clear()

    # -- the services of the running loop -------------------------------------

    def services(self) -> LoopServices:
        """The heartbeat and group commit of the running loop, started on first use."""
        loop = asyncio.get_running_loop()
        services = self._loops.get(loop)
        if services is None:
            keeper = LeaseKeeper(self.store.queue, self.call, self.settings.lease_ttl)
            writer = self.store.events.loop_writer()
            events = self.store.events
            commits = GroupCommit(writer.append_many if writer else lambda batch: self.call(events.append_many, batch))
            services = LoopServices(keeper, commits, writer)
            services.start()
            self._loops[loop] = services
        return services

    async def shutdown_loop(self) -> None:
        """Stop what this host runs in the current loop (graceful)."""
        loop = asyncio.get_running_loop()
        services = self._loops.get(loop)
        if services is not None:
            await services.shutdown()  # still registered meanwhile: a runner built during it joins these services
            self._loops.pop(loop, None)

    def pool(self, concurrency: int) -> Worker:
        """The worker pool of the running loop, started on first use."""
        services = self.services()
        if services.worker is None:
            worker = Worker(
                self.store.queue,
                self.call,
                self.worker_runner,
                services.keeper,
                self.owner,
                concurrency=max(1, concurrency),
                poll_interval=self.settings.poll_interval,
                queues=self.settings.queues,
                code_version=self.code_version,
            )
            services.start_worker(worker, self._scheduler(worker))
            if self.retention is not None:
                purge = partial(retention_loop, self.call, self.store.executions, self.clock, self.retention)
                every = self.settings.retention_every_s
                loop = lambda: purge(services.stop_work, every)  # noqa: E731
                services.tasks.append(asyncio.ensure_future(supervise("retention", loop, services.stop_work)))
            services.unwatch = self.feed.watch(waker(asyncio.get_running_loop(), worker.notify), QUEUE)
            self.feed.listen()
        assert services.worker is not None
        return services.worker

    def schedule_ports(self) -> SchedulePorts:
        """What the schedule use cases need (the CLI and HTTP call them with it)."""
        if self.calendar is None:
            raise ConfigurationError("this engine was built without a calendar: it cannot handle schedules")
        return SchedulePorts(self.store, self.calendar, self.clock, self.ids)

    def _scheduler(self, worker: Worker) -> Scheduler:
        ports = self.schedule_ports() if self.calendar else None
        return Scheduler(ports, self.call, worker.notify, self.settings.schedule_interval)

    def schedule_ticks(self) -> TickCounts:
        """Ticks this process's schedulers started, skipped and started late (metrics)."""
        totals = TickCounts()
        for services in list(self._loops.values()):
            if services.scheduler is not None:
                counts = services.scheduler.counts
                totals.add(counts.started, counts.skipped, counts.late)
        return totals

    def left_for_handler(self) -> dict[str, int]:
        """Executions this process's pools handed back for lack of a handler, per handler (a metric)."""
        totals: dict[str, int] = {}
        for services in list(self._loops.values()):
            for handler, count in (services.worker.left_for_handler if services.worker else {}).items():
                totals[handler] = totals.get(handler, 0) + count
        return totals

    def poke_inbox(self, execution_id: str) -> None:
        """A signal was offered: a runner of this process that holds the execution takes it now."""
        for loop, services in list(self._loops.items()):
            for lease, runner in list(services.keeper.held.values()):
                if lease.execution_id == execution_id:
                    loop.call_soon_threadsafe(runner.poke_inbox)

    def notify_pool(self) -> None:
        """New work in this process: wake this loop's pool, if it has one."""
        services = self._loops.get(asyncio.get_running_loop())
        if services is not None and services.worker is not None:
            services.worker.notify()

    # -- runners --------------------------------------------------------------

    async def runner_for(
        self, execution: Execution, lease: Lease, park_after: float | None = None, guard: bool = True, worker: bool = False
    ) -> ExecutionRunner:
        """A runner at the end of the execution's log; on recovery, drift is checked first."""
        workflow = await self.workflow_of(execution)
        start: ExecutionState | None = None
        history: list[Event] = []
        if execution.last_sequence >= 0:  # the row says the log is not empty: read it
            start, history = await self.call(load_history, self.store, execution.id)
        state = resume_state(start, history)
        runner = build_runner(
            execution,
            workflow,
            state,
            self.store,
            self.handlers,
            self.clock,
            self.ids,
            database_threads=self.database_threads,
            threads=self.handler_threads,
            listener=self.feed.publish,
            step_scope=self.step_scope,
            checkpoint_every=self.settings.checkpoint_every,
            engine_version=self.settings.engine_version,
            lease=lease,
            queue=self.store.queue,
            park_after=park_after,
            group=self.services().commits,
            leave_missing_handlers=worker,  # a worker leaves it for another that has the handler; `run` fails the node
            children=self.children,
            code_version=self.code_version(),
        )
        if guard and state.status == ExecutionStatus.RUNNING:
            paused = await check_drift(workflow, start, history)
            if paused is not None:
                runner.record(paused)
        return runner

    async def worker_runner(self, execution: Execution, lease: Lease) -> ExecutionRunner:
        """A worker's runner; an execution that cannot be loaded is set aside (paused with the reason)."""
        try:
            return await self.runner_for(execution, lease, park_after=self.settings.park_after, worker=True)
        except StoreUnavailable:
            raise  # the database, not the execution: the lease lapses and it is retried
        except Exception as exc:
            unloadable, events = await self.call(
                set_aside, execution, lease, exc, self.store, self.clock, self.ids, self.settings.engine_version
            )
            for event in events:
                self.feed.publish(event)
            raise unloadable from exc

    async def control_runner(self, execution: Execution, lease: Lease) -> ExecutionRunner:
        """A runner that only carries out a pause/resume/cancel request."""
        return await self.runner_for(execution, lease, park_after=None, guard=False)

    async def run_here(self, execution: Execution, lease: Lease) -> Execution:
        """Run a leased execution in this process, its lease kept alive meanwhile.

        Cancelled (Ctrl-C on `cerebelum run`), it hands the execution back at
        once: handlers in flight are abandoned unrecorded (a worker runs their
        attempt again) and the lease is released, not left to lapse."""
        services = self.services()
        runner: ExecutionRunner | None = None
        try:
            runner = await self.runner_for(execution, lease)
            services.keeper.add(runner)
            return await runner.run()
        except asyncio.CancelledError:
            writes = list(services.commits.writes)  # appends under way end first
            if writes:
                await asyncio.wait(writes, timeout=5.0)
            await self.call(self.store.queue.release, lease, None)
            raise
        finally:
            if runner is not None:
                services.keeper.remove(runner)

    async def join(self, execution: Execution) -> Execution:
        """An execution started earlier (the same idempotency key), or one waiting
        for a slot of its limited queue: run it here once nobody holds it and its
        queue lets it start, else wait for its end (or its pause)."""

        async def read(execution_id: str) -> Execution:
            return await self.call(self.store.executions.get, execution_id)

        while not execution.is_terminal:
            try:
                ran = await self.drive(execution.id)
                if ran.is_terminal or ran.status == ExecutionStatus.PAUSED:
                    return ran
                break  # it stopped here unfinished (pinned to another code version): until it ends
            except Conflict:
                execution = await read(execution.id)
            if execution.first_claimed_at is not None or execution.status == ExecutionStatus.PAUSED:
                break  # a worker holds it: until it ends, or pauses
            await asyncio.sleep(self.settings.poll_interval)  # its queue has no slot for it yet
        if execution.is_terminal:
            return execution
        return await wait_until_ended(self.feed, read, execution.id, stop_at_pause=True)

    async def drive(self, execution_id: str) -> Execution:
        """Claim this one execution and run it here (recovery by hand, tests);
        Conflict if another worker holds it or its queue has no slot for it now."""
        lease = await self.call(self.store.queue.claim_one, execution_id, self.owner, self.settings.lease_ttl, True)
        if lease is None:
            raise Conflict(f"execution {execution_id} is held by another worker, or waits for a slot of its queue")
        return await self.run_here(await self.call(self.store.executions.get, execution_id), lease)

    async def replay(
        self, execution_id: str, strict: bool, from_start: bool, handlers: HandlerRegistry | None = None
    ) -> ReplayReport:
        """Re-drive the orchestrator over the execution's log (from its latest checkpoint unless `from_start`)."""
        workflow = await self.workflow_of(await self.call(self.store.executions.get, execution_id))
        if from_start:
            start, history = None, await self.call(self.store.events.read, execution_id)
        else:
            start, history = await self.call(load_history, self.store, execution_id)
        return await replay_log(
            workflow, history, start, strict=strict, handlers=handlers or self.handlers, clock=self.clock,
            step_scope=self.step_scope,
        )

    def close(self) -> None:
        self.database_threads.shutdown(wait=True)
        self.handler_threads.shutdown(wait=False)

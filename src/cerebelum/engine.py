"""`cerebelum.Engine`: the Python API. Every method calls a use case; the CLI
and the HTTP API go through this same object."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from cerebelum._version import __version__
from cerebelum.application.broker import Broker, Subscriber, Wakeups
from cerebelum.application.control_execution import control_execution
from cerebelum.application.create_workflow import create_workflow
from cerebelum.application.execute_workflow import (
    build_runner,
    check_drift,
    load_history,
    resume_state,
    set_aside,
    start_execution,
)
from cerebelum.application.group_commit import GroupCommit
from cerebelum.application.handlers import HandlerRegistry, default_registry
from cerebelum.application.handoff import Threads, in_thread
from cerebelum.application.replay_execution import ReplayReport, replay_log
from cerebelum.application.runner import ExecutionRunner
from cerebelum.application.time_travel import describe_state, state_at
from cerebelum.application.worker import LeaseKeeper, Worker, worker_id
from cerebelum.bootstrap import database_url, expression_compiler, open_store
from cerebelum.domain.errors import Conflict, NotFound, Problem, StoreUnavailable
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Control, Execution, ExecutionStatus, Lease
from cerebelum.domain.ports import Clock, ExpressionCompiler, IdSource, Store
from cerebelum.domain.state import ExecutionState
from cerebelum.domain.validation import read_workflow, validate_document
from cerebelum.domain.workflow import StoredWorkflow, Workflow
from cerebelum.infrastructure.deterministic.interception import step_scope
from cerebelum.infrastructure.system import SystemClock, UuidSource
from cerebelum.runtime import Runtime

if TYPE_CHECKING:
    from cerebelum.infrastructure.pubsub.pg_listener import PgListener

T = TypeVar("T")
NO_INPUT: Any = object()  # `run(wf)` with no input runs with {}; an explicit None stays null


class Engine:
    """A workflow engine bound to one database.

    `run` executes in this process to the end; `execute` enqueues and returns
    at once, leaving the work to this engine's in-process pool (`workers`
    executions at a time; 0 = enqueue only). Every method has an async twin
    named `<method>_async` for use inside an event loop.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        workers: int = 4,
        handlers: HandlerRegistry | None = None,
        seed: int | None = None,
        virtual_time: bool = False,
        store: Store | None = None,
        compiler: ExpressionCompiler | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        checkpoint_every: int | None = 1000,
        lease_ttl: float = 30.0,
        poll_interval: float = 0.5,
        park_after: float = 2.0,
    ) -> None:
        self.url = database_url(url)
        self.store = store if store is not None else open_store(self.url)
        self.handlers = handlers if handlers is not None else default_registry
        self.compiler = compiler if compiler is not None else expression_compiler()
        self.clock = clock if clock is not None else SystemClock()
        self.ids = ids if ids is not None else UuidSource()
        self.seed = seed
        self.virtual_time = virtual_time
        self.workers = workers
        self.checkpoint_every = checkpoint_every
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.park_after = park_after
        self.owner = worker_id()
        self.broker = Broker()
        self.wakeups = Wakeups()
        self._listener: PgListener | None = None
        self._listener_lock = threading.Lock()
        self._db = Threads(8, "cerebelum-db")
        self._steps = Threads(32, "cerebelum-step")
        self._compiled: dict[tuple[str, int], Workflow] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the in-process pool gracefully (in-flight handlers finish, the
        rest is handed back to the queue), then release everything."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            runtime = self._runtimes.get(self._loop)
            if runtime is not None:
                asyncio.run_coroutine_threadsafe(runtime.shutdown(), self._loop).result()
            if self._listener is not None:
                self._listener.stop()  # before the loop it wakes goes away
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._loop_thread is not None
            self._loop_thread.join()
            self._loop.close()
        if self._listener is not None:
            self._listener.stop()
        self._db.shutdown(wait=True)
        self._steps.shutdown(wait=False)
        self.store.close()

    async def close_async(self) -> None:
        """Stop what this engine runs in the current event loop (use before `close`)."""
        runtime = self._runtimes.pop(asyncio.get_running_loop(), None)
        if runtime is not None:
            await runtime.shutdown()

    def _runtime(self) -> Runtime:
        """The heartbeat (and pool) of the running loop, started on first use."""
        loop = asyncio.get_running_loop()
        runtime = self._runtimes.get(loop)
        if runtime is None:
            keeper = LeaseKeeper(self.store.queue, self._in_db, self.lease_ttl)
            writer = self.store.events.loop_writer()
            events = self.store.events
            commits = GroupCommit(
                writer.append_many if writer is not None else lambda batch: self._in_db(events.append_many, batch)
            )
            runtime = Runtime(keeper, commits, writer)
            runtime.start()
            self._runtimes[loop] = runtime
        return runtime

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine's own loop thread and wait for it."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("Engine's blocking methods cannot run inside an event loop: use the *_async twins")
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="cerebelum-engine", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _in_db(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return in_thread(self._db, func, *args)

    # -- workflows ----------------------------------------------------------

    def _handler_names(self) -> frozenset[str] | None:
        """Handlers are checked at validation only when some were loaded."""
        return self.handlers.names() if len(self.handlers) else None

    def validate(self, document: Any) -> list[Problem]:
        """Every problem of a definition document (no database involved)."""
        return validate_document(document, self.compiler, self._handler_names())

    async def create_workflow_async(self, document: Any) -> StoredWorkflow:
        return await self._in_db(
            create_workflow, document, self.store.workflows, self.compiler, self.clock, self.ids, self._handler_names()
        )

    def create_workflow(self, document: Any) -> StoredWorkflow:
        """Validate, version and store a definition (see CreateWorkflow)."""
        return self._sync(self.create_workflow_async(document))

    async def get_workflow_async(self, name: str, version: int | None = None) -> StoredWorkflow:
        return await self._in_db(self.store.workflows.get, name, version)

    def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        return self._sync(self.get_workflow_async(name, version))

    async def workflows_async(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        return await self._in_db(self.store.workflows.list, name, limit, offset)

    async def workflow_versions_async(self, name: str) -> list[StoredWorkflow]:
        return await self._in_db(self.store.workflows.versions, name)

    async def executions_async(
        self, workflow: str | None = None, status: str | Collection[str] | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        return await self._in_db(self.store.executions.list, workflow, status, limit, offset)

    async def delete_workflow_async(self, name: str, version: int) -> None:
        await self._in_db(self.store.workflows.delete, name, version)

    def delete_workflow(self, name: str, version: int) -> None:
        """Soft delete one version (Conflict while executions of it are not terminal)."""
        self._sync(self.delete_workflow_async(name, version))

    def workflows(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        return self.store.workflows.list(name, limit, offset)

    def workflow_versions(self, name: str) -> list[StoredWorkflow]:
        return self.store.workflows.versions(name)

    def compiled(self, stored: StoredWorkflow) -> Workflow:
        key = (stored.name, stored.version)
        if key not in self._compiled:
            self._compiled[key] = read_workflow(stored.definition, self.compiler)
        return self._compiled[key]

    # -- executions -----------------------------------------------------------

    async def _create(
        self, workflow: str | dict[str, Any], input: Any, owner: str | None, **options: Any
    ) -> tuple[Execution, Lease | None]:
        version = options.pop("version", None)
        virtual = options.pop("virtual_time", None)
        seed = options.pop("seed", None)
        if options:
            raise TypeError(f"unknown options: {', '.join(options)}")
        stored = await self.create_workflow_async(workflow) if isinstance(workflow, dict) else None

        def create() -> tuple[Execution, Lease | None]:  # resolve and insert in one trip to the database thread
            found = stored if stored is not None else self.store.workflows.get(str(workflow), version)
            if found.deleted:
                raise NotFound(f"workflow {found.name} version {found.version} was deleted")
            return start_execution(
                found,
                {} if input is NO_INPUT else input,
                self.store,
                self.clock,
                self.ids,
                self.seed if seed is None else seed,
                self.virtual_time if virtual is None else virtual,
                owner,
                self.lease_ttl,
            )

        return await self._in_db(create)

    async def run_async(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        execution, lease = await self._create(workflow, input, self.owner, **options)
        assert lease is not None
        return await self._run_here(execution, lease)

    async def _run_here(self, execution: Execution, lease: Lease) -> Execution:
        """Run a leased execution in this process, its lease kept alive meanwhile.

        Cancelled (Ctrl-C on `cerebelum run`), it hands the execution back at
        once: handlers in flight are abandoned unrecorded (a worker runs their
        attempt again) and the lease is released, not left to lapse."""
        keeper = self._runtime().keeper
        runner: ExecutionRunner | None = None
        try:
            runner = await self._make_runner(execution, lease, park_after=None)
            keeper.add(runner)
            return await runner.run()
        except asyncio.CancelledError:
            if runner is not None:
                keeper.remove(runner)
                runner = None
            await self._hand_back(lease)
            raise
        finally:
            if runner is not None:
                keeper.remove(runner)

    async def _hand_back(self, lease: Lease) -> None:
        """Release a lease now (after the appends under way), so any worker can claim it."""
        writes = list(self._runtime().commits.writes)
        if writes:
            await asyncio.wait(writes, timeout=5.0)
        await self._in_db(self.store.queue.release, lease, None)

    async def start_here_async(
        self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any
    ) -> tuple[Execution, Coroutine[Any, Any, Execution]]:
        """`run_async` in two steps: the new execution (leased to this engine) and
        the coroutine that runs it here, for callers that need its id before the
        end. Cancelling that coroutine hands the execution back at once."""
        execution, lease = await self._create(workflow, input, self.owner, **options)
        assert lease is not None
        return execution, self._run_here(execution, lease)

    def run(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        """Create (or reuse) and run an execution to its end in this process.

        `workflow` is a stored workflow's name or a definition document.
        Options: version, seed, virtual_time. Returns early only if the
        execution is paused or cancelled meanwhile.
        """
        return self._sync(self.run_async(workflow, input, **options))

    async def execute_async(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        execution, _ = await self._create(workflow, input, None, **options)
        if self.workers > 0:
            self._pool().notify()
        return execution

    def execute(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        """The seed's ExecuteWorkflow: enqueue and return the pending execution at
        once. This engine's in-process pool (unless `workers=0`) or any
        `cerebelum worker` on the same database runs it."""
        return self._sync(self.execute_async(workflow, input, **options))

    def _pool(self) -> Worker:
        runtime = self._runtime()
        if runtime.worker is None:
            worker = Worker(
                self.store.queue,
                self._in_db,
                self._make_worker_runner,
                runtime.keeper,
                self.owner,
                concurrency=max(1, self.workers),
                poll_interval=self.poll_interval,
            )
            runtime.start_worker(worker)
            loop = asyncio.get_running_loop()
            self.wakeups.watch(_soon(loop, worker.notify), None)
            self._listen()
        assert runtime.worker is not None
        return runtime.worker

    async def work_async(self, concurrency: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Run a worker pool in the current loop until `stop` is set (or forever)."""
        if concurrency is not None:
            self.workers = concurrency
        self._pool()
        await (stop or asyncio.Event()).wait()
        await self.close_async()

    async def start_worker_async(self) -> None:
        """Start this engine's pool in the running loop (stopped by `close_async`)."""
        self._pool()

    def start_worker(self, concurrency: int | None = None) -> None:
        """Start this engine's pool in the background (stopped by `close`)."""
        if concurrency is not None:
            self.workers = concurrency

        async def start() -> None:
            self._pool()

        self._sync(start())

    async def _drive(self, execution: Execution) -> Execution:
        """Claim this one execution and run it here (recovery by hand, tests)."""
        lease = await self._in_db(self.store.queue.claim_one, execution.id, self.owner, self.lease_ttl)
        if lease is None:
            raise Conflict(f"execution {execution.id} is held by another worker")
        return await self._run_here(await self.status_async(execution.id), lease)

    async def _make_worker_runner(self, execution: Execution, lease: Lease) -> ExecutionRunner:
        try:
            return await self._make_runner(execution, lease, park_after=self.park_after)
        except StoreUnavailable:
            raise  # the database, not the execution: the lease lapses and it is retried
        except Exception as exc:
            raise await self._in_db(
                set_aside, execution, lease, exc, self.store, self.clock, self.ids, __version__
            ) from exc

    async def _make_runner(
        self, execution: Execution, lease: Lease, park_after: float | None, guard: bool = True
    ) -> ExecutionRunner:
        """A runner at the end of the execution's log; on recovery, drift is checked first."""
        workflow = self._compiled.get((execution.workflow, execution.version))
        if workflow is None:  # a version's definition never changes: read and compile it once
            stored = await self.get_workflow_async(execution.workflow, execution.version)
            workflow = await self._in_db(self.compiled, stored)
        start: ExecutionState | None = None
        history: list[Event] = []
        if execution.last_sequence >= 0:  # the row says the log is not empty: read it
            start, history = await self._in_db(load_history, self.store, execution.id)
        state = resume_state(start, history)
        runner = build_runner(
            execution,
            workflow,
            state,
            self.store,
            self.handlers,
            self.clock,
            self.ids,
            db=self._db,
            threads=self._steps,
            listener=self._on_appended,
            step_scope=step_scope,
            checkpoint_every=self.checkpoint_every,
            engine_version=__version__,
            lease=lease,
            queue=self.store.queue,
            park_after=park_after,
            group=self._runtime().commits,
        )
        if guard and state.status == ExecutionStatus.RUNNING:
            paused = await check_drift(workflow, start, history)
            if paused is not None:
                runner.record(paused)
        return runner

    # -- pause, resume, cancel -------------------------------------------------

    async def _control(self, execution_id: str, control: str) -> Execution:
        execution = await control_execution(
            execution_id,
            control,
            self.store.queue,
            self.status_async,
            self._in_db,
            lambda e, lease: self._make_runner(e, lease, park_after=None, guard=False),
            self.owner,
            self.lease_ttl,
        )
        if control == Control.RESUME and self.workers > 0 and self._runtimes.get(asyncio.get_running_loop()):
            self._pool().notify()
        return execution

    async def pause_async(self, execution_id: str) -> Execution:
        return await self._control(execution_id, Control.PAUSE)

    def pause(self, execution_id: str) -> Execution:
        """Pause before the next node starts (IllegalTransition if it cannot be paused)."""
        return self._sync(self.pause_async(execution_id))

    async def resume_async(self, execution_id: str) -> Execution:
        return await self._control(execution_id, Control.RESUME)

    def resume(self, execution_id: str) -> Execution:
        """Resume a paused execution where it stopped (a worker carries it on)."""
        return self._sync(self.resume_async(execution_id))

    async def cancel_async(self, execution_id: str) -> Execution:
        return await self._control(execution_id, Control.CANCEL)

    def cancel(self, execution_id: str) -> Execution:
        """Stop at the next safe point: in-flight branches are cancelled; status
        `failed` with error kind `cancelled`."""
        return self._sync(self.cancel_async(execution_id))

    # -- determinism: replay and time travel ---------------------------------

    async def replay_async(self, execution_id: str, strict: bool = False, from_start: bool = False) -> ReplayReport:
        execution = await self.status_async(execution_id)
        stored = await self.get_workflow_async(execution.workflow, execution.version)
        workflow = await self._in_db(self.compiled, stored)
        if from_start:
            start, history = None, await self._in_db(self.store.events.read, execution_id)
        else:
            start, history = await self._in_db(load_history, self.store, execution_id)
        return await replay_log(
            workflow, history, start, strict=strict, handlers=self.handlers, clock=self.clock, step_scope=step_scope
        )

    def replay(self, execution_id: str, strict: bool = False, from_start: bool = False) -> ReplayReport:
        """Re-drive the orchestrator from the log; report identity or the first divergence.

        Starts from the latest checkpoint unless `from_start`. `strict` also
        re-invokes every handler with the recorded time and randomness.
        """
        return self._sync(self.replay_async(execution_id, strict, from_start))

    async def state_at_async(self, execution_id: str, sequence: int | None = None) -> dict[str, Any]:
        await self.status_async(execution_id)
        state = await self._in_db(state_at, self.store.events, execution_id, sequence)
        return describe_state(state)

    def state_at(self, execution_id: str, sequence: int | None = None) -> dict[str, Any]:
        """The execution's state after event `sequence` (time travel)."""
        return self._sync(self.state_at_async(execution_id, sequence))

    async def status_async(self, execution_id: str) -> Execution:
        return await self._in_db(self.store.executions.get, execution_id)

    def status(self, execution_id: str) -> Execution:
        """The execution row (raises NotFound for an unknown id)."""
        return self.store.executions.get(execution_id)

    def executions(
        self, workflow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        return self.store.executions.list(workflow, status, limit, offset)

    async def events_async(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        await self.status_async(execution_id)  # NotFound for an unknown id
        return await self._in_db(self.store.events.read, execution_id, start, end)

    def events(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        """The event log, in sequence order (an inclusive range)."""
        self.status(execution_id)
        return self.store.events.read(execution_id, start, end)

    def _on_appended(self, event: Event) -> None:
        self.broker.publish(event)
        self.wakeups.touch(event.execution_id)

    def _listen(self) -> float:
        """Start LISTEN/NOTIFY once (PostgreSQL); return the polling interval to use."""
        if not self.url.startswith(("postgresql", "postgres:")):
            return 0.25
        with self._listener_lock:
            if self._listener is None:
                from cerebelum.infrastructure.pubsub.pg_listener import PgListener

                self._listener = PgListener(self.url, self.wakeups.touch, lambda: self.wakeups.touch(None))
                self._listener.start()
        return 5.0 if self._listener.connected.is_set() else 0.25

    @contextlib.asynccontextmanager
    async def _changes(self, key: str | None) -> AsyncIterator[Callable[[float], Awaitable[None]]]:
        """Yields `wait(poll)`: returns when `key` changed here or in another
        process (LISTEN/NOTIFY on PostgreSQL), or after `poll` s at most."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        unwatch = self.wakeups.watch(_soon(loop, changed.set), key)

        async def wait(poll: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll)
            changed.clear()

        try:
            yield wait
        finally:
            unwatch()

    async def wait_async(self, execution_id: str, timeout: float | None = None) -> Execution:
        poll = self._listen()
        async with self._changes(execution_id) as changed, asyncio.timeout(timeout):
            while True:
                execution = await self.status_async(execution_id)
                if execution.is_terminal:
                    return execution
                await changed(poll)

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is terminal (TimeoutError after `timeout` s).
        Woken by appends (LISTEN/NOTIFY on PostgreSQL); polls on SQLite."""
        return self._sync(self.wait_async(execution_id, timeout))

    async def follow_async(self, execution_id: str, start: int = 0) -> AsyncIterator[Event]:
        """Every event from `start` on, as it is appended, until the execution is terminal."""
        poll = self._listen()
        async with self._changes(execution_id) as changed:
            while True:
                execution = await self.status_async(execution_id)
                for event in await self._in_db(self.store.events.read, execution_id, start):
                    start = event.sequence + 1
                    yield event
                if execution.is_terminal and start > execution.last_sequence:
                    return
                await changed(poll)

    def subscribe(self, subscriber: Subscriber, execution_id: str | None = None) -> Callable[[], None]:
        """Receive this process's appended events as they are written; returns unsubscribe."""
        return self.broker.subscribe(subscriber, execution_id)


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> Callable[[], None]:
    """A thread-safe waker for `loop` that is quiet once the loop has closed."""

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(callback)

    return wake

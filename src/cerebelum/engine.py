"""`cerebelum.Engine`: the Python API. Every method calls a use case; the CLI
and the HTTP API go through this same object."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cerebelum._version import __version__
from cerebelum.application.broker import Broker, Subscriber
from cerebelum.application.create_workflow import create_workflow
from cerebelum.application.execute_workflow import (
    build_runner,
    check_drift,
    load_history,
    resume_state,
    start_execution,
)
from cerebelum.application.handlers import HandlerRegistry, default_registry
from cerebelum.application.replay_execution import ReplayReport, replay_log
from cerebelum.application.time_travel import describe_state, state_at
from cerebelum.bootstrap import database_url, expression_compiler, open_store
from cerebelum.domain.errors import Problem
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution
from cerebelum.domain.ports import Clock, ExpressionCompiler, IdSource, Store
from cerebelum.domain.validation import read_workflow, validate_document
from cerebelum.domain.workflow import StoredWorkflow, Workflow
from cerebelum.infrastructure.deterministic.interception import step_scope
from cerebelum.infrastructure.system import SystemClock, UuidSource

T = TypeVar("T")
NO_INPUT: Any = object()  # `run(wf)` with no input runs with {}; an explicit None stays null
TERMINAL_EVENTS = (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED)


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
        self.broker = Broker()
        self._db = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cerebelum-db")
        self._steps = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cerebelum-step")
        self._compiled: dict[tuple[str, int], Workflow] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._pool: set[asyncio.Task[Execution]] = set()
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish what the in-process pool is running, then release everything."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._loop_thread is not None
            self._loop_thread.join()
            self._loop.close()
        self._db.shutdown(wait=True)
        self._steps.shutdown(wait=False)
        self.store.close()

    async def _drain(self) -> None:
        if self._pool:
            await asyncio.gather(*self._pool, return_exceptions=True)

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

    async def _in_db(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, func, *args)

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

    def workflows(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        return self.store.workflows.list(name, limit, offset)

    def workflow_versions(self, name: str) -> list[StoredWorkflow]:
        return self.store.workflows.versions(name)

    def compiled(self, stored: StoredWorkflow) -> Workflow:
        key = (stored.name, stored.version)
        if key not in self._compiled:
            self._compiled[key] = read_workflow(stored.definition, self.compiler)
        return self._compiled[key]

    async def _resolve(self, workflow: str | dict[str, Any], version: int | None) -> StoredWorkflow:
        if isinstance(workflow, dict):
            return await self.create_workflow_async(workflow)
        return await self.get_workflow_async(workflow, version)

    # -- executions -----------------------------------------------------------

    async def start_async(
        self,
        workflow: str | dict[str, Any],
        input: Any = NO_INPUT,
        *,
        version: int | None = None,
        seed: int | None = None,
        virtual_time: bool | None = None,
    ) -> Execution:
        """Create a pending execution without running it."""
        stored = await self._resolve(workflow, version)
        virtual = self.virtual_time if virtual_time is None else virtual_time
        seed = self.seed if seed is None else seed
        return await self._in_db(
            start_execution, stored, {} if input is NO_INPUT else input, self.store, self.clock, self.ids, seed, virtual
        )

    async def run_async(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        execution = await self.start_async(workflow, input, **options)
        return await self._drive(execution)

    def run(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        """Create (or reuse) and run an execution to its end in this process.

        `workflow` is a stored workflow's name or a definition document.
        Options: version, seed, virtual_time.
        """
        return self._sync(self.run_async(workflow, input, **options))

    async def execute_async(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        execution = await self.start_async(workflow, input, **options)
        if self.workers > 0:
            task = asyncio.ensure_future(self._pooled(execution))
            self._pool.add(task)
            task.add_done_callback(self._pool.discard)
        return execution

    def execute(self, workflow: str | dict[str, Any], input: Any = NO_INPUT, **options: Any) -> Execution:
        """The seed's ExecuteWorkflow: enqueue and return the pending execution at once."""
        return self._sync(self.execute_async(workflow, input, **options))

    async def _pooled(self, execution: Execution) -> Execution:
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.workers))
        async with slots:
            return await self._drive(execution)

    async def _drive(self, execution: Execution) -> Execution:
        """Run (or recover) one execution: fold its history, guard against drift, go on."""
        stored = await self.get_workflow_async(execution.workflow, execution.version)
        workflow = await self._in_db(self.compiled, stored)
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
            listener=self.broker.publish,
            step_scope=step_scope,
            checkpoint_every=self.checkpoint_every,
            engine_version=__version__,
        )
        if not state.is_terminal and state.sequence >= 0:
            paused = await check_drift(workflow, start, history)
            if paused is not None:
                runner.record(paused)
                await runner.flush()
                return runner.execution
        return await runner.run()

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

    async def wait_async(self, execution_id: str, timeout: float | None = None, poll: float = 0.25) -> Execution:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()

        def on_event(event: Event) -> None:
            if event.type in TERMINAL_EVENTS:
                loop.call_soon_threadsafe(finished.set)

        unsubscribe = self.broker.subscribe(on_event, execution_id)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    execution = await self.status_async(execution_id)
                    if execution.is_terminal:
                        return execution
                    # woken by this process's broker; polling covers other processes
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), poll)
        finally:
            unsubscribe()

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is terminal (TimeoutError after `timeout` s)."""
        return self._sync(self.wait_async(execution_id, timeout))

    def subscribe(self, subscriber: Subscriber, execution_id: str | None = None) -> Callable[[], None]:
        """Receive this process's appended events as they are written; returns unsubscribe."""
        return self.broker.subscribe(subscriber, execution_id)

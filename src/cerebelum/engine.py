"""`cerebelum.Engine`: the Python API, a facade. Each method delegates to a use
case or to the execution host; the CLI and the HTTP API go through it too.

Every method is written once, async (`<method>_async`); its blocking twin
runs it on the Engine's own loop thread (`runtime.LoopThread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from typing import Any

from cerebelum._version import __version__
from cerebelum.application.changes import ChangeFeed, follow, wait_until_ended
from cerebelum.application.control_execution import control_execution
from cerebelum.application.create_workflow import create_workflow
from cerebelum.application.definitions import Definitions
from cerebelum.application.execute_workflow import StartRequest, open_execution, open_with_definition
from cerebelum.application.fork import fork_execution
from cerebelum.application.handlers import HandlerRegistry, default_registry
from cerebelum.application.host import ExecutionHost, HostSettings
from cerebelum.application.queues import serving
from cerebelum.application.replay_execution import ReplayReport
from cerebelum.application.signals import send_signal
from cerebelum.application.time_travel import describe_state, state_at
from cerebelum.application.worker import worker_id
from cerebelum.bootstrap import build_adapters, code_version_of, database_url
from cerebelum.domain.errors import Problem
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Control, Execution, Lease
from cerebelum.domain.ports import Clock, ExpressionCompiler, IdSource, Store
from cerebelum.domain.workflow import StoredWorkflow, Workflow
from cerebelum.runtime import LoopThread, blocking

NO_INPUT: Any = object()  # `run(wf)` with no input runs with {}; an explicit None stays null
WorkflowRef = str | dict[str, Any] | StoredWorkflow  # a stored name, a definition, or a stored version


class Engine:
    """A workflow engine bound to one database.

    `run` executes in this process to the end; `execute` enqueues and returns
    at once, leaving the work to this engine's in-process pool (`workers`
    executions at a time; 0 = enqueue only; `queues`: of those queues only).
    Every method has an async twin named `<method>_async` for use inside an event loop.
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
        queues: Collection[str] | None = None,
        code_version: str | None = None,
        retention: str | float | None = None,  # "30d": workers purge executions that ended longer ago
    ) -> None:
        self.url = database_url(url)
        adapters = build_adapters(self.url, store=store, compiler=compiler, clock=clock, ids=ids)
        self.store, self.compiler, self.clock, self.ids = adapters.store, adapters.compiler, adapters.clock, adapters.ids
        self.handlers = handlers if handlers is not None else default_registry
        self.seed = seed
        self.virtual_time = virtual_time
        self.workers = workers
        self.definitions = Definitions(self.compiler, self.handlers)
        self.owner = worker_id()
        self.feed = ChangeFeed(self.owner, adapters.listener)
        settings = HostSettings(checkpoint_every, lease_ttl, poll_interval, park_after, __version__, retention=retention)
        settings.code_version = code_version_of(self.handlers, code_version)  # default: hash of the handler modules
        settings.queues = serving(queues)  # the pool claims from these queues only (None: all)
        self.host = ExecutionHost(
            self.store, self.handlers, self.compiler, self.clock, self.ids, adapters.step_scope, self.feed, self.owner,
            settings, adapters.calendar)  # fmt: skip
        self._bridge = LoopThread()
        self._closed = False

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
        if self._bridge.loop is not None:
            self._bridge.run(self.close_async())
        self.feed.close()  # before the loop it wakes goes away
        self._bridge.stop()
        self.host.close()
        self.store.close()

    async def close_async(self) -> None:
        """Stop what this engine runs in the current event loop (use before `close`)."""
        await self.host.shutdown_loop()

    # -- workflows ------------------------------------------------------------

    def validate(self, document: Any) -> list[Problem]:
        """Every problem of a definition document (no database involved)."""
        return self.definitions.validate(document)

    async def create_workflow_async(self, document: Any) -> StoredWorkflow:
        """Validate, version and store a definition (ValidationError lists every problem)."""
        host, names = self.host, self.definitions.handler_names()
        repository = host.store.workflows
        stored, compiled, _ = await host.call(create_workflow, document, repository, host.compiler, host.clock, host.ids, names)
        host.remember(stored, compiled)
        return stored

    async def get_workflow_async(self, name: str, version: int | None = None) -> StoredWorkflow:
        return await self.host.call(self.store.workflows.get, name, version)

    async def workflows_async(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        return await self.host.call(self.store.workflows.list, name, limit, offset)

    async def workflow_versions_async(self, name: str) -> list[StoredWorkflow]:
        return await self.host.call(self.store.workflows.versions, name)

    async def delete_workflow_async(self, name: str, version: int) -> None:
        """Soft delete one version (Conflict while executions of it are not terminal)."""
        await self.host.call(self.store.workflows.delete, name, version)

    def compiled(self, stored: StoredWorkflow) -> Workflow:
        return self.host.compiled(stored)

    create_workflow = blocking(create_workflow_async)
    get_workflow = blocking(get_workflow_async)
    workflows = blocking(workflows_async)
    workflow_versions = blocking(workflow_versions_async)
    delete_workflow = blocking(delete_workflow_async)

    # -- executions -------------------------------------------------------------

    async def _open(
        self, workflow: WorkflowRef, input: Any, owner: str | None, **options: Any
    ) -> tuple[Execution, Lease | None, bool]:
        defaults = {"seed": self.seed, "virtual_time": self.virtual_time, "owner": owner, "ttl": self.host.settings.lease_ttl}
        version, request = StartRequest.of({} if input is NO_INPUT else input, defaults, options)
        ports = (self.store, self.clock, self.ids)
        if not isinstance(workflow, dict):
            return await self.host.call(open_execution, workflow, version, request, *ports)
        opened, stored, compiled = await self.host.call(open_with_definition, workflow, self.definitions, request, *ports)
        if compiled is not None:  # (None: a key's earlier execution came back, this version was not stored)
            self.host.remember(stored, compiled)
        return opened

    async def run_async(self, /, workflow: WorkflowRef, input: Any = NO_INPUT, **options: Any) -> Execution:
        """Create and run an execution to its end in this process.

        `workflow` is a stored workflow's name, a definition document or a
        StoredWorkflow. Options: version, seed, virtual_time, timeout_s, key (an earlier
        start with the same key: that execution, run here if nobody holds it, else
        awaited), queue, priority, concurrency_key (a limited queue: once it has a
        slot). Returns early only if it is paused or cancelled meanwhile."""
        return await (await self.start_here_async(workflow, input, **options))[1]

    async def start_here_async(
        self, /, workflow: WorkflowRef, input: Any = NO_INPUT, **options: Any
    ) -> tuple[Execution, Coroutine[Any, Any, Execution]]:
        """`run_async` in two steps: the execution, and the coroutine that runs it
        here (for callers that need its id before the end). Cancelling that
        coroutine hands the execution back at once (Ctrl-C on `cerebelum run`)."""
        execution, lease, _ = await self._open(workflow, input, self.owner, **options)
        return execution, self.host.run_here(execution, lease) if lease else self.host.join(execution)

    async def execute_async(self, /, workflow: WorkflowRef, input: Any = NO_INPUT, **options: Any) -> Execution:
        """The seed's ExecuteWorkflow: enqueue and return the pending execution at
        once. This engine's in-process pool (unless `workers=0`) or any
        `cerebelum worker` on the same database runs it. With `key`, see `submit_async`."""
        return (await self.submit_async(workflow, input, **options))[0]

    async def submit_async(self, /, workflow: WorkflowRef, input: Any = NO_INPUT, **options: Any) -> tuple[Execution, bool]:
        """`execute`, also saying whether it created the execution: False when an
        earlier start with the same `key` and arguments returned that one."""
        execution, _, created = await self._open(workflow, input, None, **options)
        if created and self.workers > 0:
            self.host.pool(self.workers).notify()
        return execution, created

    run = blocking(run_async)
    execute = blocking(execute_async)
    submit = blocking(submit_async)

    async def start_worker_async(self) -> None:
        """Start this engine's pool in the running loop (stopped by `close_async`)."""
        self.host.pool(self.workers)

    async def work_async(self, concurrency: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Run a worker pool in the current loop until `stop` is set (or forever)."""
        self.workers = concurrency if concurrency is not None else self.workers
        self.host.pool(self.workers)
        await (stop or asyncio.Event()).wait()
        await self.close_async()

    def start_worker(self, concurrency: int | None = None) -> None:
        """Start this engine's pool in the background (stopped by `close`)."""
        self.workers = concurrency if concurrency is not None else self.workers
        self._bridge.run(self.start_worker_async())

    # -- pause, resume, cancel; signals and forks -------------------------------------

    async def pause_async(self, execution_id: str) -> Execution:
        """Pause before the next node starts (IllegalTransition if it cannot be paused)."""
        return await control_execution(self.host, execution_id, Control.PAUSE)

    async def resume_async(self, execution_id: str) -> Execution:
        """Resume a paused execution where it stopped (a worker carries it on)."""
        return await control_execution(self.host, execution_id, Control.RESUME)

    async def cancel_async(self, execution_id: str) -> Execution:
        """Stop at the next safe point: in-flight branches are cancelled; status
        `failed` with error kind `cancelled`."""
        return await control_execution(self.host, execution_id, Control.CANCEL)

    async def signal_async(self, execution_id: str, name: str, payload: Any = None, key: str | None = None) -> int:
        """Deliver a signal (a `wait` node consumes it); the sequence of its `signal_received` event."""
        return (await send_signal(self.host, execution_id, name, payload, key)).sequence

    async def fork_async(self, execution_id: str, at: int | None = None) -> Execution:
        """A new execution that keeps the log up to `at` (default: before the failure), run by the pool."""
        forked = await fork_execution(self.host, execution_id, at)
        if self.workers > 0:
            self.host.pool(self.workers).notify()
        return forked

    pause = blocking(pause_async)
    resume = blocking(resume_async)
    cancel = blocking(cancel_async)
    signal = blocking(signal_async)
    fork = blocking(fork_async)

    # -- determinism: replay and time travel ----------------------------------------

    async def replay_async(self, execution_id: str, strict: bool = False, from_start: bool = False) -> ReplayReport:
        """Re-drive the orchestrator from the log (from its latest checkpoint unless `from_start`);
        report identity or the first divergence. `strict` re-invokes every handler as recorded."""
        return await self.host.replay(execution_id, strict, from_start, self.handlers)

    async def state_at_async(self, execution_id: str, sequence: int | None = None) -> dict[str, Any]:
        """The execution's state after event `sequence` (time travel)."""
        await self.status_async(execution_id)
        return describe_state(await self.host.call(state_at, self.store.events, execution_id, sequence))

    replay = blocking(replay_async)
    state_at = blocking(state_at_async)

    # -- reading and following ------------------------------------------------------

    async def status_async(self, execution_id: str) -> Execution:
        """The execution row (raises NotFound for an unknown id)."""
        return await self.host.call(self.store.executions.get, execution_id)

    async def executions_async(
        self, workflow: str | None = None, status: str | Collection[str] | None = None, limit: int = 50, offset: int = 0,
        parent: str | None = None,
    ) -> list[Execution]:
        """Newest first; `parent`: the children of that execution."""
        return await self.host.call(self.store.executions.list, workflow, status, limit, offset, parent)

    async def events_async(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        """The event log, in sequence order (an inclusive range)."""
        await self.status_async(execution_id)  # NotFound for an unknown id
        return await self.host.call(self.store.events.read, execution_id, start, end)

    async def wait_async(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is terminal (TimeoutError after `timeout` s).
        Woken by this process's appends, by other processes' through LISTEN/NOTIFY
        on PostgreSQL; polls on SQLite."""
        async with asyncio.timeout(timeout):
            return await wait_until_ended(self.feed, self.status_async, execution_id)

    def follow_async(self, execution_id: str, start: int = 0) -> AsyncIterator[Event]:
        """Every event from `start` on, as it is committed, until the execution is terminal."""
        read = lambda i, s: self.host.call(self.store.events.read, i, s)  # noqa: E731
        return follow(self.feed, read, self.status_async, execution_id, start)

    status = blocking(status_async)
    executions = blocking(executions_async)
    events = blocking(events_async)
    wait = blocking(wait_async)

    def subscribe(self, subscriber: Callable[[Event], None], execution_id: str | None = None) -> Callable[[], None]:
        """Receive this process's appended events as they are committed; returns unsubscribe."""
        return self.feed.subscribe(subscriber, execution_id)

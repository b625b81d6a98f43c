"""ExecutionRunner: turns the orchestrator's decisions into handler calls,
timers and appended events. It owns no state the log does not hold, so a
runner started on a half-finished execution simply carries on (recovery)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any

from cerebelum.application.context import StepContext
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.domain.errors import StoreUnavailable
from cerebelum.domain.events import Event, EventType, NewEvent, rfc3339
from cerebelum.domain.execution import Execution
from cerebelum.domain.orchestrator import Activity, AwaitTimer, Invoke, StartTimer, decide, error
from cerebelum.domain.ports import Clock, EventStore, IdSource
from cerebelum.domain.state import ExecutionState, apply
from cerebelum.domain.workflow import Workflow

Listener = Callable[[Event], None]
# Makes a StepContext the "current step" (transparent interception) for the code run inside.
StepScope = Callable[[StepContext], AbstractContextManager[None]]
STORE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ExecutionRunner:
    """Drives one execution until it is terminal or has nothing left to do."""

    def __init__(
        self,
        workflow: Workflow,
        execution: Execution,
        state: ExecutionState,
        events: EventStore,
        handlers: HandlerRegistry,
        clock: Clock,
        ids: IdSource,
        db: Executor | None = None,
        threads: Executor | None = None,
        listener: Listener | None = None,
        step_scope: StepScope | None = None,
        checkpoint_every: int | None = None,
        engine_version: str | None = None,
    ) -> None:
        self.workflow = workflow
        self.execution = execution
        self.state = state
        self.store = events
        self.handlers = handlers
        self.clock = clock
        self.ids = ids
        self.db = db
        self.threads = threads
        self.listener = listener
        self.step_scope = step_scope
        self.checkpoint_every = checkpoint_every
        self.engine_version = engine_version
        self.unflushed: list[Event] = []
        self.tasks: dict[tuple[str, str, int], asyncio.Task[list[NewEvent]]] = {}

    async def run(self) -> Execution:
        """Run to a terminal status (or until paused with nothing in flight)."""
        if self.state.sequence < 0:
            self.record(self.started_event())
        try:
            while True:
                activities = self.settle()
                await self.flush()
                if self.state.is_terminal:
                    break
                self.reconcile(activities)
                if not self.tasks:
                    break
                done, _ = await asyncio.wait(self.tasks.values(), return_when=asyncio.FIRST_COMPLETED)
                for key, task in list(self.tasks.items()):
                    if task in done and self.tasks.get(key) is task:
                        del self.tasks[key]
                        for new in task.result():
                            self.record(new)
                        self.reconcile(self.settle())
        finally:
            for task in self.tasks.values():
                task.cancel()
        return self.execution

    def started_event(self) -> NewEvent:
        start = self.clock.now()
        payload = {
            "workflow": self.execution.workflow,
            "version": self.execution.version,
            "input": self.execution.input,
            "seed": self.execution.seed,
            "clock": "virtual" if self.execution.virtual_time else "real",
            "started_at": rfc3339(start),
        }
        return NewEvent(EventType.EXECUTION_STARTED, None, payload)

    # -- the decide / apply loop -----------------------------------------

    def record(self, new: NewEvent) -> None:
        event = Event(
            id=self.ids.new_id(),
            execution_id=self.execution.id,
            sequence=self.state.sequence + 1,
            type=new.type,
            node_id=new.node_id,
            payload=new.payload,
            timestamp=self.clock.now(),
            engine_version=self.engine_version,
            workflow_version=self.execution.version,
        )
        apply(self.state, event)
        self.unflushed.append(event)
        every = self.checkpoint_every
        if every and (event.sequence + 1) % every == 0 and new.type != EventType.CHECKPOINT_CREATED:
            self.record(NewEvent(EventType.CHECKPOINT_CREATED, None, {"state": self.state.to_json()}))

    def settle(self) -> list[Activity]:
        """Apply decided events until none follows; return the activities wanted."""
        while True:
            decision = decide(self.workflow, self.state)
            if not decision.events:
                return decision.activities
            for new in decision.events:
                self.record(new)

    def reconcile(self, wanted: list[Activity]) -> None:
        """Cancel what is no longer wanted; start what is wanted and not running."""
        keys = {activity.key: activity for activity in wanted}
        for key in [k for k in self.tasks if k not in keys]:
            self.tasks.pop(key).cancel()
        for key, activity in keys.items():
            if key not in self.tasks:
                self.tasks[key] = asyncio.ensure_future(self.perform(activity))

    async def flush(self) -> None:
        """Append the pending events and the new projection in one transaction."""
        if not self.unflushed:
            return
        events, self.unflushed = self.unflushed, []
        self.execution = project(self.execution, self.state)
        for delay in (*STORE_RETRY_DELAYS, None):
            try:
                await self.in_db(self.store.append, self.execution, events)
                break
            except StoreUnavailable:
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        if self.listener is not None:
            for event in events:
                self.listener(event)

    async def in_db(self, func: Callable[..., Any], *args: Any) -> Any:
        if self.db is None:
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self.db, func, *args)

    # -- activities ---------------------------------------------------------

    async def perform(self, activity: Activity) -> list[NewEvent]:
        if isinstance(activity, Invoke):
            return await self.invoke(activity)
        if isinstance(activity, StartTimer):
            base = activity.clock if self.state.virtual_time and activity.clock else self.clock.now()
            fires_at = activity.until or base + timedelta(seconds=activity.seconds or 0)
            return [NewEvent(EventType.TIMER_STARTED, activity.path, {"fires_at": rfc3339(fires_at)})]
        return await self.await_timer(activity)

    async def await_timer(self, activity: AwaitTimer) -> list[NewEvent]:
        payload: dict[str, Any] = {}
        if self.state.virtual_time:
            current = self.state.nodes[activity.path].clock
            payload["clock"] = rfc3339(max(activity.fires_at, current) if current else activity.fires_at)
        else:
            await self.sleep_until(activity.fires_at)
        return [NewEvent(EventType.TIMER_FIRED, activity.path, payload)]

    async def sleep_until(self, moment: Any) -> None:
        while (remaining := (moment - self.clock.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, 60.0))

    async def invoke(self, activity: Invoke) -> list[NewEvent]:
        path, attempt = activity.path, activity.attempt
        if activity.not_before is not None and not self.state.virtual_time:
            await self.sleep_until(activity.not_before)
        handler = self.handlers.get(activity.node.handler)
        if handler is None:
            message = f"unknown handler '{activity.node.handler}' (at {activity.node.location}.config.handler)"
            failure = error("unknown_handler", message, path, attempt)
            return [NewEvent(EventType.NODE_FAILED, path, {"error": failure})]
        ctx = StepContext(self.execution.id, self.execution.seed, activity, self.clock, self.state.virtual_time)
        try:
            scope = self.step_scope if handler.intercept and self.step_scope is not None else None
            call = self.call(handler.func, handler.is_async, ctx, scope)
            output = await asyncio.wait_for(call, activity.node.timeout_s)
            output = _as_json(output)
        except TimeoutError:
            failure = error("timeout", f"attempt {attempt} timed out after {activity.node.timeout_s:g}s", path, attempt)
            return self.attempt_failed(activity, ctx, failure)
        except _NotJson as exc:
            failure = error("invalid_output", f"handler '{handler.name}' returned {exc}", path, attempt)
            return self.attempt_failed(activity, ctx, failure)
        except Exception as exc:
            failure = error("handler_error", f"{type(exc).__name__}: {exc}", path, attempt)
            return self.attempt_failed(activity, ctx, failure)
        payload: dict[str, Any] = {"output": output, "attempt": attempt}
        if ctx.clock is not None:
            payload["clock"] = rfc3339(ctx.clock)
        if ctx.recorded:
            payload["recorded"] = ctx.recorded
        return [NewEvent(EventType.NODE_COMPLETED, path, payload)]

    async def call(self, func: Callable[..., Any], is_async: bool, ctx: StepContext, scope: StepScope | None) -> Any:
        """Call the handler with `ctx` as the current step (sync ones in a thread)."""
        if is_async:
            with scope(ctx) if scope is not None else nullcontext():
                return await func(ctx)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.threads, context.run, _in_scope, func, ctx, scope)

    def attempt_failed(self, activity: Invoke, ctx: StepContext, failure: dict[str, Any]) -> list[NewEvent]:
        delay = activity.node.retry.delay_after(activity.attempt)
        base = ctx.clock if ctx.clock is not None else self.clock.now()
        retry_at = rfc3339(base + timedelta(seconds=delay)) if delay is not None else None
        payload: dict[str, Any] = {"attempt": activity.attempt, "error": failure, "retry_at": retry_at}
        if ctx.clock is not None:
            payload["clock"] = rfc3339(ctx.clock)
        if ctx.recorded:
            payload["recorded"] = ctx.recorded
        events = [NewEvent(EventType.ATTEMPT_FAILED, activity.path, payload)]
        if delay is None:
            events.append(NewEvent(EventType.NODE_FAILED, activity.path, {"error": failure}))
        return events


def _in_scope(func: Callable[..., Any], ctx: StepContext, scope: StepScope | None) -> Any:
    with scope(ctx) if scope is not None else nullcontext():
        return func(ctx)


class _NotJson(Exception):
    pass


def _as_json(value: Any) -> Any:
    """The value as JSON gives it back (tuples become lists); reject the rest."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise _NotJson(f"a value that is not JSON-serialisable ({exc})") from None


def project(execution: Execution, state: ExecutionState) -> Execution:
    """The execution row as the fold of its log says it is."""
    return execution.evolve(
        status=state.status,
        output=state.output,
        error=state.error,
        started_at=state.started_at,
        completed_at=state.completed_at,
        last_sequence=state.sequence,
    )


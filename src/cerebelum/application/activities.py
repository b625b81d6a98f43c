"""Performing activities: handler calls (with retries and timeouts) and timers.

Each returns the events it observed; the runner applies them. Nothing here
decides anything: that is the orchestrator's job.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from cerebelum.application.context import StepContext
from cerebelum.application.failures import non_retryable, user_traceback
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.handoff import Pool, Threads, call_in, in_thread
from cerebelum.domain.events import EventType, NewEvent, rfc3339
from cerebelum.domain.limits import configured
from cerebelum.domain.orchestrator import (
    NO_TASK,
    Activity,
    AwaitDeadline,
    AwaitSignal,
    AwaitTimer,
    Invoke,
    StartTimer,
    error,
)
from cerebelum.domain.ports import Clock
from cerebelum.domain.state import ExecutionState
from cerebelum.domain.values import value_problem

log = logging.getLogger("cerebelum.handlers")

# Makes a StepContext the "current step" (transparent interception) for the code run inside.
StepScope = Callable[[StepContext], AbstractContextManager[None]]


class Performer:
    """Carries out activities for one execution."""

    def __init__(
        self,
        state: ExecutionState,
        handlers: HandlerRegistry,
        clock: Clock,
        threads: Pool | None,
        step_scope: StepScope | None,
    ) -> None:
        self.state = state
        self.handlers = handlers
        self.clock = clock
        self.threads = threads
        self.step_scope = step_scope
        self.leave_missing = False  # a worker leaves an execution whose handler it lacks, for another worker
        self.missing: tuple[str, str] | None = None  # (handler, node path) found missing

    async def perform(self, activity: Activity) -> list[NewEvent]:
        if isinstance(activity, Invoke):
            return await self.invoke(activity)
        if isinstance(activity, AwaitDeadline):
            await self.sleep_until(activity.fires_at)
            return [NewEvent(EventType.TIMER_FIRED, None, {"deadline": rfc3339(activity.fires_at)})]
        if isinstance(activity, NO_TASK):
            raise AssertionError("a signal or child wait runs nothing: the runner parks or looks at its inbox")
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

    async def sleep_until(self, moment: datetime) -> None:
        while (remaining := (moment - self.clock.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, 60.0))

    async def invoke(self, activity: Invoke) -> list[NewEvent]:
        path, attempt = activity.path, activity.attempt
        if activity.not_before is not None and not self.state.virtual_time:
            await self.sleep_until(activity.not_before)
        handler = self.handlers.get(activity.node.handler)
        if handler is None and self.leave_missing:
            self.missing = (activity.node.handler, path)  # another worker may have it: the runner hands it back
            return []
        if handler is None:
            message = f"unknown handler '{activity.node.handler}' (at {activity.node.location}.config.handler)"
            failure = error("unknown_handler", message, path, attempt)
            return [NewEvent(EventType.NODE_FAILED, path, {"error": failure})]
        ctx = StepContext(self.state.execution_id, self.state.seed, activity, self.clock, self.state.virtual_time)
        try:
            scope = self.step_scope if handler.intercept and self.step_scope is not None else None
            call = self.call(handler.func, handler.is_async, ctx, scope)
            output = _as_json(await asyncio.wait_for(call, activity.node.timeout_s))
        except TimeoutError:
            failure = error("timeout", f"attempt {attempt} timed out after {activity.node.timeout_s:g}s", path, attempt)
            return self.attempt_failed(activity, ctx, failure)
        except _NotJson as exc:
            failure = error("invalid_output", f"handler '{handler.name}' returned {exc}", path, attempt)
            return self.attempt_failed(activity, ctx, failure)
        except Exception as exc:
            kind = type(exc)
            trace = user_traceback(exc)
            final = non_retryable(exc, activity.node.retry.non_retryable)
            exception = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            extra: dict[str, Any] = {"exception": exception, "traceback": trace}
            if final:
                extra["non_retryable"] = True
            failure = error("handler_error", f"{kind.__name__}: {exc}", path, attempt, **extra)
            log.debug("%s attempt %s of %s failed%s:\n%s", self.state.execution_id, attempt, path,
                      " (not retryable)" if final else "", trace)
            return self.attempt_failed(activity, ctx, failure, final)
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
        context = contextvars.copy_context()
        if isinstance(self.threads, Threads):  # a timed-out handler's thread is replaced in the pool
            return await call_in(self.threads, context.run, _in_scope, func, ctx, scope)
        return await in_thread(self.threads, context.run, _in_scope, func, ctx, scope)

    def attempt_failed(
        self, activity: Invoke, ctx: StepContext, failure: dict[str, Any], final: bool = False
    ) -> list[NewEvent]:
        delay = None if final else activity.node.retry.delay_after(activity.attempt)
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
    """The value as JSON gives it back (tuples become lists); reject the rest,
    and what some backend could not store identically (domain/values.py)."""
    problem = value_problem(value, configured().max_value_depth)
    if problem is not None:
        raise _NotJson(f"a value that cannot be stored ({problem})")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _NotJson(f"a value that is not JSON-serialisable ({exc})") from None
    if has_nul(text):
        raise _NotJson(NUL_PROBLEM)
    if type(value) in _SCALARS:
        return value  # already what JSON gives back (a float or int subclass is not: it is re-read)
    return json.loads(text)


_SCALARS = frozenset({str, int, float, bool, type(None)})


NUL_PROBLEM = "a string with a NUL character (\\u0000), which PostgreSQL's JSON cannot store"


def has_nul(dumped: str) -> bool:
    """Whether JSON text holds an escaped NUL (`\\u0000` after an even run of backslashes)."""
    start = dumped.find("\\u0000")
    while start != -1:
        backslashes = len(dumped[:start]) - len(dumped[:start].rstrip("\\"))
        if backslashes % 2 == 0:
            return True
        start = dumped.find("\\u0000", start + 1)
    return False


# Parked for a signal with no timer: claimable only when a sender hands the execution back.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


def due_at(activity: Activity) -> datetime | None:
    """When a waiting activity next needs a worker (None: it needs one now)."""
    if isinstance(activity, AwaitTimer | AwaitDeadline):
        return activity.fires_at
    if isinstance(activity, AwaitSignal):
        return NEVER
    if isinstance(activity, Invoke):
        return activity.not_before
    return None

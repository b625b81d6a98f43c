"""Use case ReplayExecution: re-drive the orchestrator from a recorded log and
check that it makes the same decisions.

Outcomes that came from the outside world (handler results, timers, the
start, pauses) are served from the log; everything the orchestrator decides
is re-derived and compared, per node path and in order, on type, node and
payload (ids and timestamps ignored). `strict` also re-invokes each handler
with the recorded time and randomness and compares its output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from cerebelum.application.context import ReplayMismatch, StepContext
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.domain.errors import HandlerError, IllegalTransition
from cerebelum.domain.events import Event, EventType, NewEvent
from cerebelum.domain.orchestrator import Activity, AwaitDeadline, AwaitTimer, Invoke, StartChild, StartTimer, decide
from cerebelum.domain.ports import Clock
from cerebelum.domain.state import ExecutionState, apply
from cerebelum.domain.workflow import Workflow

StepScope = Callable[[StepContext], AbstractContextManager[None]]
CONTROL_EVENTS = frozenset(
    {
        EventType.EXECUTION_PAUSED,
        EventType.EXECUTION_RESUMED,
        EventType.CHECKPOINT_CREATED,
        EventType.SIGNAL_RECEIVED,
        EventType.CODE_VERSION_CHANGED,
    }
)


def is_control(event: Event) -> bool:
    """Written on request (pause / resume / cancel, a signal delivered) or as bookkeeping,
    whatever the orchestrator would decide next: a replay applies these as it meets them."""
    if event.type in CONTROL_EVENTS:
        return True
    if event.type == EventType.NODE_CANCELLED:
        return bool(event.payload.get("requested"))
    if event.type == EventType.EXECUTION_FAILED:
        return (event.payload.get("error") or {}).get("kind") == "cancelled"
    return False


@dataclass(frozen=True)
class Divergence:
    """The first place where the replay and the log disagree."""

    sequence: int
    node_id: str | None
    reason: str
    recorded: dict[str, Any] | None
    replayed: dict[str, Any] | None
    code_version: str | None = None  # the code version that recorded the original event (or ran the execution then)

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "node_id": self.node_id,
            "reason": self.reason,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "code_version": self.code_version,
        }


@dataclass(frozen=True)
class ReplayReport:
    execution_id: str
    identical: bool
    strict: bool
    checked: int  # events compared or served
    from_sequence: int  # where the replay started (a checkpoint, or 0)
    divergence: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "identical": self.identical,
            "strict": self.strict,
            "events_checked": self.checked,
            "from_sequence": self.from_sequence,
            "divergence": self.divergence.to_json() if self.divergence else None,
        }


def _shape(event: Event | NewEvent) -> dict[str, Any]:
    return {"type": event.type, "node_id": event.node_id, "payload": event.payload}


def _is_outcome_of(event: Event, activities: Sequence[Activity]) -> bool:
    """Whether a recorded event is the outcome of an activity the replay wants."""
    if is_control(event):
        return True
    kinds: dict[str, tuple[type, ...]] = {
        EventType.NODE_COMPLETED: (Invoke,),
        EventType.ATTEMPT_FAILED: (Invoke,),
        EventType.NODE_FAILED: (Invoke, StartChild),  # a child that cannot be started: its workflow is gone
        EventType.TIMER_STARTED: (StartTimer,),
        EventType.TIMER_FIRED: (AwaitTimer,),
    }
    if event.type == EventType.TIMER_FIRED and event.node_id is None:  # the execution's deadline
        return any(isinstance(a, AwaitDeadline) for a in activities)
    wanted = kinds.get(event.type, ())
    return any(isinstance(a, wanted) and getattr(a, "path", None) == event.node_id for a in activities)


class _Replay:
    def __init__(
        self,
        workflow: Workflow,
        log: Sequence[Event],
        state: ExecutionState,
        strict: bool,
        handlers: HandlerRegistry | None,
        clock: Clock | None,
        step_scope: StepScope | None,
    ) -> None:
        self.workflow = workflow
        self.log = log
        self.state = state
        self.strict = strict
        self.handlers = handlers
        self.clock = clock
        self.step_scope = step_scope
        self.position = 0  # index into log of the next recorded event
        self.checked = 0

    def divergence(self, reason: str, recorded: Event | None, replayed: NewEvent | None) -> Divergence:
        sequence = recorded.sequence if recorded is not None else self.state.sequence + 1
        node = recorded.node_id if recorded is not None else (replayed.node_id if replayed else None)
        return Divergence(
            sequence,
            node,
            reason,
            _shape(recorded) if recorded is not None else None,
            _shape(replayed) if replayed is not None else None,
            recorded.code_version if recorded is not None and recorded.code_version else self.state.code_version,
        )

    def settle(self) -> tuple[list[Activity], Divergence | None]:
        """Decide until nothing follows, matching each decided batch against the log."""
        while True:
            decision = decide(self.workflow, self.state)
            if not decision.events:
                return decision.activities, None
            # the next len(events) recorded events; checkpoints may sit between them
            batch: list[Event] = []
            end = self.position
            while len(batch) < len(decision.events) and end < len(self.log):
                if self.log[end].type != EventType.CHECKPOINT_CREATED:
                    batch.append(self.log[end])
                end += 1
            if not batch and end >= len(self.log):
                # the recorded prefix ends here: a live execution's next decisions
                # (after a resume, say) are simply not written yet
                return [], None
            found = _compare_batch(decision.events, batch)
            if found is not None:
                reason, recorded, replayed = found
                return [], self.divergence(reason, recorded, replayed)
            for event in self.log[self.position : end]:
                apply(self.state, event)
            self.checked += end - self.position
            self.position = end

    async def run(self) -> Divergence | None:
        while True:
            while self.position < len(self.log) and is_control(self.log[self.position]):
                try:  # a request carried out before the runner decided anything more
                    apply(self.state, self.log[self.position])
                except IllegalTransition as exc:
                    return self.divergence(f"the recorded event does not apply: {exc}", self.log[self.position], None)
                self.position += 1
                self.checked += 1
            activities, found = self.settle()
            if found is not None:
                return found
            if self.position >= len(self.log):
                return None
            recorded = self.log[self.position]
            if not _is_outcome_of(recorded, activities):
                return self.divergence("the log has an event the replay did not decide", recorded, None)
            if self.strict:
                mismatch = await self.reinvoke(recorded, activities)
                if mismatch is not None:
                    return mismatch
            try:
                apply(self.state, recorded)
            except (IllegalTransition, KeyError) as exc:
                return self.divergence(f"the recorded event does not apply: {exc}", recorded, None)
            self.position += 1
            self.checked += 1

    async def reinvoke(self, recorded: Event, activities: Sequence[Activity]) -> Divergence | None:
        """Strict mode: call the handler again with the recorded time and randomness."""
        if recorded.type not in (EventType.NODE_COMPLETED, EventType.ATTEMPT_FAILED):
            return None
        if (recorded.payload.get("error") or {}).get("kind") == "timeout":
            return None  # a timeout cannot be reproduced on purpose
        activity = next(a for a in activities if isinstance(a, Invoke) and a.path == recorded.node_id)
        assert self.handlers is not None and self.clock is not None
        handler = self.handlers.get(activity.node.handler)
        if handler is None:
            raise HandlerError(f"strict replay needs handler '{activity.node.handler}', which is not loaded")
        attempt = recorded.payload.get("attempt", activity.attempt)
        invoke = Invoke(activity.path, activity.run, attempt, activity.node, activity.view, None, activity.clock)
        ctx = StepContext(
            self.state.execution_id,
            self.state.seed,
            invoke,
            self.clock,
            self.state.virtual_time,
            replayed=recorded.payload.get("recorded", []),
        )
        scope = self.step_scope if handler.intercept and self.step_scope is not None else None
        try:
            with scope(ctx) if scope is not None else nullcontext():
                output = handler.func(ctx)
                if asyncio.iscoroutine(output):
                    output = await output
            output = json.loads(json.dumps(output))
        except ReplayMismatch as exc:
            return self.divergence(f"strict: {exc}", recorded, None)
        except Exception as exc:
            if recorded.type == EventType.ATTEMPT_FAILED:
                return None
            replayed = NewEvent(EventType.ATTEMPT_FAILED, recorded.node_id, {"error": f"{type(exc).__name__}: {exc}"})
            return self.divergence("strict: the handler now fails", recorded, replayed)
        if recorded.type == EventType.ATTEMPT_FAILED:
            replayed = NewEvent(EventType.NODE_COMPLETED, recorded.node_id, {"output": output})
            return self.divergence("strict: the handler now succeeds where the log recorded a failure", recorded, replayed)
        if output != recorded.payload.get("output"):
            replayed = NewEvent(EventType.NODE_COMPLETED, recorded.node_id, {**recorded.payload, "output": output})
            return self.divergence("strict: the handler returns a different output", recorded, replayed)
        return None


def _compare_batch(decided: list[NewEvent], recorded: Sequence[Event]) -> tuple[str, Event | None, NewEvent | None] | None:
    """Compare one decided batch per node path, in order (interleaving is not a divergence)."""
    by_node: dict[str | None, list[Event]] = {}
    for event in recorded:
        by_node.setdefault(event.node_id, []).append(event)
    for new in decided:
        queue = by_node.get(new.node_id)
        if not queue:
            first = recorded[0] if recorded else None
            return ("the replay decided an event the log does not have", first, new)
        event = queue.pop(0)
        if (event.type, event.payload) != (new.type, new.payload):
            return ("the replay decided differently", event, new)
    return None


async def replay_log(
    workflow: Workflow,
    log: Sequence[Event],
    start: ExecutionState | None = None,
    *,
    strict: bool = False,
    handlers: HandlerRegistry | None = None,
    clock: Clock | None = None,
    step_scope: StepScope | None = None,
) -> ReplayReport:
    """Replay `log` (which continues `start`, a checkpoint's state, if given)."""
    state = start if start is not None else ExecutionState()
    execution_id = log[0].execution_id if log else state.execution_id
    replay = _Replay(workflow, log, state, strict, handlers, clock, step_scope)
    if start is not None and log and log[0].type == EventType.CHECKPOINT_CREATED:
        apply(state, log[0])  # the checkpoint this replay starts from
        replay.position = replay.checked = 1
    if start is None and log:
        if log[0].type != EventType.EXECUTION_STARTED:
            first = replay.divergence("the log does not start with execution_started", log[0], None)
            return ReplayReport(execution_id, False, strict, 0, 0, first)
        apply(state, log[0])
        replay.position = replay.checked = 1
    from_sequence = log[0].sequence if log else state.sequence + 1
    divergence = await replay.run()
    return ReplayReport(execution_id, divergence is None, strict, replay.checked, from_sequence, divergence)

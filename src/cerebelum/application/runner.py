"""ExecutionRunner: turns the orchestrator's decisions into activities and
appended events. It owns no state the log does not hold, so a runner started
on a half-finished execution simply carries on (recovery).

Each turn of the loop: apply decided events until none follows, append them
with the new execution row in one transaction (fenced by the lease), act on
a pause/resume/cancel request the append reports, then make sure exactly the
wanted activities run and wait for one to finish. A runner whose only work
left is waiting on timers parks: it releases the execution with a `wake_at`
and holds no memory until a worker claims it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from cerebelum.application.activities import Performer, StepScope, due_at
from cerebelum.application.group_commit import GroupCommit
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.handoff import Pool, in_thread
from cerebelum.domain.errors import Conflict, LeaseLost, StoreUnavailable
from cerebelum.domain.events import Event, EventType, NewEvent, parse_rfc3339, rfc3339
from cerebelum.domain.execution import Control, Execution, ExecutionStatus, Lease, Versioning
from cerebelum.domain.orchestrator import NO_TASK, Activity, Invoke, StartChild, decide, error
from cerebelum.domain.ports import Append, Clock, EventStore, ExecutionQueue, IdSource, SignalInbox
from cerebelum.domain.state import ExecutionState, NodeStatus, apply
from cerebelum.domain.workflow import Workflow

Listener = Callable[[Event], None]


class Family(Protocol):
    """Child executions (a `workflow` node): started through the execute use case, by the host."""

    async def ensure(
        self, parent: Execution, state: ExecutionState, start: StartChild, here: bool
    ) -> tuple[list[NewEvent], bool]:
        """Start the child unless it exists (`here`: run it in this process); the events
        that follow (the node fails: its workflow is gone) and whether it ended already."""
        ...

    async def ended(self, execution: Execution) -> None:
        """An execution ended: tell its parent, cancel its unfinished children."""
        ...


STORE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 5.0, 10.0, 10.0)  # ~52 s in all
STOP_GRACE_S = 30.0
LEAVE_FOR_S = 1.0  # an execution left for a worker that has its handler is claimable again after this
CHILD_RECHECK_S = 60.0  # a parent parked on a child looks at it this often, in case the child's end went unsaid
INBOX_POLL_S = 0.25  # a runner that cannot park (`run` in one process) looks at its inbox this often while it waits


class ExecutionRunner:
    """Drives one execution until it is terminal, paused, parked or stopped."""

    def __init__(
        self,
        workflow: Workflow,
        execution: Execution,
        state: ExecutionState,
        events: EventStore,
        handlers: HandlerRegistry,
        clock: Clock,
        ids: IdSource,
        database_threads: Pool | None = None,
        threads: Pool | None = None,
        listener: Listener | None = None,
        step_scope: StepScope | None = None,
        checkpoint_every: int | None = None,
        engine_version: str | None = None,
        lease: Lease | None = None,
        queue: ExecutionQueue | None = None,
        park_after: float | None = None,
        group: GroupCommit | None = None,
        leave_missing_handlers: bool = False,
        signals: SignalInbox | None = None,
        code_version: str | None = None,
        children: Family | None = None,
    ) -> None:
        self.workflow = workflow
        self.execution = execution
        self.state = state
        self.store = events
        self.clock = clock
        self.ids = ids
        self.database_threads = database_threads
        self.listener = listener
        self.checkpoint_every = checkpoint_every
        self.engine_version = engine_version
        self.code_version = code_version  # this process's: stamped on every event it writes
        self.lease = lease
        self.queue = queue
        self.park_after = park_after  # park when the next due activity is further away (None: never)
        self.signals = signals
        self.children = children
        self.ensured: set[tuple[str, str, int]] = set()  # children this runner made sure of
        # Signals offered and not in the log yet: take them before anything else.
        self.inbox_due = signals is not None and execution.signals_sent > len(state.signals)
        # Shares commits with the other runners of this loop (a runner of its own: a group of one).
        self.group = group if group is not None else GroupCommit(lambda batch: self.in_db(events.append_many, batch))
        self.performer = Performer(state, handlers, clock, threads, step_scope)
        self.performer.leave_missing = leave_missing_handlers
        self.unflushed: list[Event] = []
        self.tasks: dict[tuple[str, str, int], asyncio.Task[list[NewEvent]]] = {}
        self.wanted: list[Activity] = []
        self.acted_on: str | None = None  # the control request the next append clears
        self.requested: str | None = execution.control
        self.stopping = False
        self.lost = False
        self.checkpoint_due = False
        self.parked_until: datetime | None = None
        self._wakeup: asyncio.Future[None] | None = None  # set while the loop waits for a change

    # -- what others may ask of a running runner ----------------------------

    def poke(self, control: str | None) -> None:
        """A pause/resume/cancel request seen by the heartbeat."""
        if control is not None and control != self.requested:
            self.requested = control
            self._wake()

    def poke_inbox(self, offered: int | None = None) -> None:
        """Signals were offered (`offered`: the row's count, from the heartbeat; None: surely new)."""
        if offered is None or offered > len(self.state.signals):
            self.inbox_due = True
            self._wake()

    def stop(self) -> None:
        """Graceful shutdown: start nothing new, finish in-flight handlers, hand back."""
        self.stopping = True
        self._wake()

    def lose(self) -> None:
        """The lease is gone: write nothing more."""
        self.lost = True
        self._wake()

    async def act_alone(self) -> Execution:
        """Carry out the pending request without running the workflow, then hand back."""
        try:
            if self.state.sequence < 0:  # a request alone does not fix the code version: no code ran
                self.record(started_event(self.execution, self.clock, self.engine_version))
            if self.requested is not None:
                self.act_on(self.requested)
            await self.take_inbox()
            await self.flush()
            await self.tell_family()
        except LeaseLost:
            self.lost = True
            return self.execution
        assert self.lease is not None and self.queue is not None
        await self.in_db(self.queue.release, self.lease, None)
        return self.execution

    # -- the loop -----------------------------------------------------------

    async def run(self) -> Execution:
        """Run until terminal, paused with nothing in flight, parked or stopped."""
        if self.state.sequence < 0:
            self.record(self.started_event())
        elif not self.take_over():  # pinned to another code version: left untouched for its own workers
            if self.lease is not None and self.queue is not None:
                await self.in_db(self.queue.release, self.lease, None)
            return self.execution
        try:
            await self._loop()
        except LeaseLost:
            self.lost = True
        finally:
            for task in self.tasks.values():
                task.cancel()
        if not self.lost:
            await self.tell_family()
        if self.lost or self.lease is None or self.queue is None:
            return self.execution
        if not (self.state.is_terminal and not self.unflushed):  # a terminal append released it already
            await self.in_db(self.queue.release, self.lease, *self.release_terms())
        return self.execution

    def release_terms(self) -> tuple[datetime | None, dict[str, Any] | None]:
        """When the execution may be claimed again, and a note on the row saying why it was left."""
        if self.performer.missing is None or self.state.is_terminal:
            return self.parked_until, None
        handler, path = self.performer.missing
        message = f"handler '{handler}' is not registered in the worker that claimed it; waiting for a worker that has it"
        note = {**error("missing_handler", message, path), "handler": handler}
        return self.clock.now() + timedelta(seconds=LEAVE_FOR_S), note

    async def _loop(self) -> None:
        while not self.lost:
            if self.inbox_due:
                await self.take_inbox()
            self.wanted = self.settle()
            if self.requested is not None:
                self.act_on(self.requested)
                continue
            self.requested = await self.flush()
            if self.requested is not None:
                continue
            if self.state.is_terminal or self.lost:
                return
            if await self.start_children():
                continue
            self.reconcile()
            if self.stopping:
                await self.finish_in_flight()
                return
            waiting = self.state.status == ExecutionStatus.RUNNING and any(
                isinstance(a, NO_TASK) for a in self.wanted
            )
            if not self.tasks and not waiting:
                return  # paused with nothing in flight
            if self.should_park():
                return
            await self._changes(INBOX_POLL_S if waiting and self.signals is not None and not self.tasks else None)
            if waiting and not self.inbox_due and self.signals is not None and not self.tasks:
                self.inbox_due = True  # nobody told us (another process's sender): look anyway
            for key, task in list(self.tasks.items()):
                if task.done() and self.tasks.get(key) is task:
                    del self.tasks[key]
                    for new in task.result():
                        self.record(new)
                    self.wanted = self.settle()
                    self.reconcile(start=False)  # new handlers start once their node_started is durable
            if self.performer.missing is not None:
                self.stopping = True  # hand it back, once in-flight handlers end, for a worker that has the handler

    async def _changes(self, timeout: float | None = None) -> None:
        """Until an activity ends or someone pokes, stops or fences this runner (or `timeout`)."""
        if any(task.done() for task in self.tasks.values()):
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._wakeup
            else:
                await asyncio.wait([self._wakeup], timeout=timeout)
        finally:
            self._wakeup = None

    async def start_children(self) -> bool:
        """Make sure each wanted child exists (once per runner: started once, by its derived
        id); True when that changed what follows (a failure recorded, an end to read)."""
        if self.children is None or self.state.status != ExecutionStatus.RUNNING or self.stopping:
            return False
        changed = False
        here = self.lease is not None and self.park_after is None  # `run DEF`: its children run here too
        for start in [a for a in self.wanted if isinstance(a, StartChild) and a.key not in self.ensured]:
            self.ensured.add(start.key)
            events, ended = await self.children.ensure(self.execution, self.state, start, here)
            for new in events:
                self.record(new)
            if ended:
                self.inbox_due = True
            changed = changed or bool(events) or ended
        return changed

    async def tell_family(self) -> None:
        """Once ended: its parent hears how (a signal), its unfinished children are cancelled."""
        if self.children is None or not self.state.is_terminal or self.unflushed:
            return
        started_children = any(run.child is not None for run in self.state.nodes.values())
        if self.execution.parent_id is not None or started_children:  # most executions have neither: no query
            await self.children.ended(self.execution)

    async def take_inbox(self) -> None:
        """Append the signals offered and not yet in the log, in arrival order."""
        self.inbox_due = False
        if self.signals is None or self.state.is_terminal:
            return
        for signal in await self.in_db(self.signals.pending, self.execution.id, self.state.delivered_ids()):
            self.record(NewEvent(EventType.SIGNAL_RECEIVED, None, signal.received_payload()))

    async def _perform(self, activity: Activity) -> list[NewEvent]:
        try:
            return await self.performer.perform(activity)
        finally:
            self._wake()  # now, not from a done callback: that would cost the loop one more turn

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def started_event(self) -> NewEvent:
        return started_event(self.execution, self.clock, self.engine_version, self.code_version, self.workflow.timeout_s)

    def take_over(self) -> bool:
        """Before this process runs a node of an execution another code version ran:
        `upgrade` records the change first; `pinned` leaves it (False)."""
        mine, theirs = self.code_version, self.state.code_version
        if mine is None or mine == theirs or self.state.status != ExecutionStatus.RUNNING:
            return True
        if self.workflow.versioning == Versioning.PINNED and theirs is not None:
            return False
        self.record(changed_event(theirs, mine, "continued"))
        return True

    def record(self, new: NewEvent) -> None:
        if new.type == EventType.EXECUTION_STARTED:  # the virtual clock starts exactly at the start
            timestamp = parse_rfc3339(new.payload["started_at"])
        else:
            timestamp = self.clock.now()
        event = Event(
            id=self.ids.new_id(),
            execution_id=self.execution.id,
            sequence=self.state.sequence + 1,
            type=new.type,
            node_id=new.node_id,
            payload=new.payload,
            timestamp=timestamp,
            engine_version=self.engine_version,
            workflow_version=self.execution.version,
            code_version=self.code_version,
        )
        apply(self.state, event)
        self.unflushed.append(event)
        every = self.checkpoint_every
        if every and (event.sequence + 1) % every == 0:
            self.checkpoint_due = True

    def checkpoint(self) -> None:
        """Write the folded state, at a settled point only (where decide has nothing
        more to add), so recovery and replay can start from it."""
        if self.checkpoint_due and not self.state.is_terminal:
            self.record(NewEvent(EventType.CHECKPOINT_CREATED, None, {"state": self.state.to_json()}))
        self.checkpoint_due = False

    def settle(self) -> list[Activity]:
        """Apply decided events until none follows; return the activities wanted."""
        while True:
            decision = decide(self.workflow, self.state)
            if not decision.events:
                self.checkpoint()
                return decision.activities
            for new in decision.events:
                self.record(new)

    def act_on(self, control: str) -> None:
        """Turn a pause/resume/cancel request into events (or drop one that no longer applies)."""
        status = self.state.status
        if control == Control.PAUSE and status == ExecutionStatus.RUNNING:
            self.record(NewEvent(EventType.EXECUTION_PAUSED, None, {"reason": "requested"}))
        elif control == Control.RESUME and status == ExecutionStatus.PAUSED:
            self.record(NewEvent(EventType.EXECUTION_RESUMED, None, {}))
        elif control == Control.CANCEL and not self.state.is_terminal:
            for path, run in list(self.state.nodes.items()):
                if run.status == NodeStatus.RUNNING:
                    reason = error("cancelled", "the execution was cancelled", path)
                    self.record(NewEvent(EventType.NODE_CANCELLED, path, {"error": reason, "requested": True}))
            failure = error("cancelled", "the execution was cancelled", self.state.current)
            self.record(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
        self.acted_on = control
        self.requested = None

    def reconcile(self, start: bool = True) -> None:
        """Cancel what is no longer wanted; start what is wanted and not running.

        Called to start only right after a flush: a handler never runs before
        its node_started (and the completion that led to it) is durable.
        While paused or stopping nothing new starts, but in-flight handlers finish.
        """
        keys = {activity.key: activity for activity in self.wanted if not isinstance(activity, NO_TASK)}
        for key in [k for k in self.tasks if k not in keys]:
            self.tasks.pop(key).cancel()
        if not start or self.stopping or self.state.status != ExecutionStatus.RUNNING:
            return
        for key, activity in keys.items():
            if key not in self.tasks:
                self.tasks[key] = asyncio.ensure_future(self._perform(activity))

    def should_park(self) -> bool:
        """Only timers and signal waits left, none due soon: give the execution back until
        the first is due (a signal wakes it sooner: its sender claims it)."""
        if self.park_after is None or self.lease is None:
            return False
        running = [a for a in self.wanted if a.key in self.tasks or isinstance(a, NO_TASK)]
        if self.state.virtual_time and not all(isinstance(a, NO_TASK) for a in running):
            return False  # virtual timers fire at once
        now = self.clock.now()
        moments = [now + timedelta(seconds=CHILD_RECHECK_S) if isinstance(a, StartChild) else due_at(a) for a in running]
        if not moments or any(m is None for m in moments):
            return False
        first = min(m for m in moments if m is not None)
        if first - now < timedelta(seconds=self.park_after):
            return False
        self.parked_until = first
        return True

    async def finish_in_flight(self) -> None:
        """Stopping: let running handlers end (within a grace period), record them."""
        invokes = {k: t for k, t in self.tasks.items() if k[0] == "invoke"}
        for key in [k for k in self.tasks if k not in invokes]:
            self.tasks.pop(key).cancel()
        if invokes:
            done, _ = await asyncio.wait(invokes.values(), timeout=STOP_GRACE_S)
            for key, task in invokes.items():
                if task in done and not task.cancelled() and task.exception() is None:
                    self.tasks.pop(key, None)
                    for new in task.result():
                        self.record(new)
            self.settle()
            await self.flush()
        waits = [due_at(a) for a in self.wanted if due_at(a) is not None]
        self.parked_until = min((m for m in waits if m is not None), default=None)

    # -- persistence ----------------------------------------------------------

    async def flush(self) -> str | None:
        """Append pending events and the new row in one transaction; return a pending request."""
        if not self.unflushed and self.acted_on is None:
            return None
        events, acted = self.unflushed, self.acted_on
        self.execution = project(self.execution, self.state)
        retried = False
        control: str | None = None
        for delay in (*STORE_RETRY_DELAYS, None):
            try:
                control = await self.group.append(Append(self.execution, events, self.lease, acted))
                break
            except StoreUnavailable:
                if delay is None or self.lost:
                    raise
                retried = True
                await asyncio.sleep(delay)
            except Conflict:
                if not (retried and await self.already_written(events)):
                    raise
                break  # the lost acknowledgement was a commit after all
        self.unflushed, self.acted_on = [], None
        if self.listener is not None:
            for event in events:
                self.listener(event)
        return control

    async def already_written(self, events: list[Event]) -> bool:
        if not events:
            return True
        stored = await self.in_db(self.store.read, self.execution.id, events[0].sequence, events[-1].sequence)
        return [e.id for e in stored] == [e.id for e in events]

    async def in_db(self, func: Callable[..., Any], *args: Any) -> Any:
        if self.database_threads is None:
            return func(*args)
        return await in_thread(self.database_threads, func, *args)


def started_event(
    execution: Execution,
    clock: Clock,
    engine_version: str | None,
    code_version: str | None = None,
    timeout_s: float | None = None,
) -> NewEvent:
    """`timeout_s`: the definition's deadline; one given at start wins."""
    now = clock.now()
    payload: dict[str, Any] = {
        "workflow": execution.workflow,
        "version": execution.version,
        "input": execution.input,
        "seed": execution.seed,
        "clock": "virtual" if execution.virtual_time else "real",
        "started_at": rfc3339(now),
        "engine_version": engine_version,
        "code_version": code_version,  # None: started by a request alone (pause, cancel), no code ran yet
    }
    timeout = execution.timeout_s if execution.timeout_s is not None else timeout_s
    if timeout is not None:
        payload["deadline"] = rfc3339(now + timedelta(seconds=timeout))
    if execution.parent_id is not None:  # a child: where it was started from, and how deep it is
        payload["parent"] = {"execution_id": execution.parent_id, "node": execution.parent_node}
        payload["depth"] = execution.depth
    return NewEvent(EventType.EXECUTION_STARTED, None, payload)


def changed_event(old: str | None, new: str, reason: str) -> NewEvent:
    """`code_version_changed`: `reason` is "continued" (a process with another code
    version took it over, `versioning: upgrade`) or "upgrade" (`cerebelum executions upgrade`)."""
    return NewEvent(EventType.CODE_VERSION_CHANGED, None, {"from": old, "to": new, "reason": reason})


def project(execution: Execution, state: ExecutionState) -> Execution:
    """The execution row as the fold of its log says it is."""
    return execution.evolve(
        status=state.status,
        output=state.output,
        error=state.error,
        started_at=state.started_at,
        completed_at=state.completed_at,
        last_sequence=state.sequence,
        code_version=state.code_version,
    )


__all__ = ["STOP_GRACE_S", "ExecutionRunner", "Invoke", "Listener", "changed_event", "project", "started_event"]

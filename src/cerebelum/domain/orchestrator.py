"""decide(workflow, state) -> Decision: the engine's brain, a pure function.

Given a definition and the state folded from the log, `decide` returns the
events that follow by rule alone (a node starts, an edge is taken, a map
completes) and the activities that should be under way (handler calls,
timers). The runner applies the events, asks again until no event follows,
then makes sure exactly the listed activities run. A fresh run, a recovery
after a crash and a replay all drive this same function; none of them keeps
any state of its own that the log does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import ExpressionError, ExpressionLimit
from cerebelum.domain.events import EventType, NewEvent, rfc3339
from cerebelum.domain.execution import ExecutionStatus, child_execution_id
from cerebelum.domain.limits import Limits
from cerebelum.domain.nodes import (
    ConditionalNode,
    DelayNode,
    FunctionNode,
    MapNode,
    Node,
    ParallelNode,
    SequentialNode,
    WaitNode,
    WorkflowNode,
    child_path,
)
from cerebelum.domain.ports import CompiledExpression
from cerebelum.domain.state import ExecutionState, NodeRun, NodeStatus
from cerebelum.domain.workflow import Edge, Workflow

_UNBOUND = object()


@dataclass(frozen=True)
class StepView:
    """What expressions and handlers see (spec section 2)."""

    input: Any
    results: dict[str, Any]
    data: Any
    item: Any = _UNBOUND
    index: int | None = None

    def activation(self) -> dict[str, Any]:
        scope = {"input": self.input, "results": self.results, "data": self.data}
        if self.item is not _UNBOUND:
            scope["item"] = self.item
            scope["index"] = self.index
        return scope

    @property
    def in_map(self) -> bool:
        return self.item is not _UNBOUND


@dataclass(frozen=True)
class Invoke:
    """Call a function node's handler (attempt `attempt`), not before `not_before`."""

    path: str
    run: int
    attempt: int
    node: FunctionNode
    view: StepView
    not_before: datetime | None
    clock: datetime | None  # virtual clock when the attempt starts

    @property
    def key(self) -> tuple[str, str, int]:
        return ("invoke", self.path, self.attempt)


@dataclass(frozen=True)
class StartTimer:
    """Start a delay node's timer: `seconds` from the clock, or at `until`."""

    path: str
    seconds: float | None
    until: datetime | None
    clock: datetime | None

    @property
    def key(self) -> tuple[str, str, int]:
        return ("start_timer", self.path, 0)


@dataclass(frozen=True)
class AwaitTimer:
    path: str
    fires_at: datetime

    @property
    def key(self) -> tuple[str, str, int]:
        return ("await_timer", self.path, 0)


@dataclass(frozen=True)
class AwaitSignal:
    """A wait node waits for a signal: nothing runs for it; the runner parks the
    execution (or, when it cannot, looks at its inbox now and then)."""

    path: str
    signal: str

    @property
    def key(self) -> tuple[str, str, int]:
        return ("await_signal", self.path, 0)


@dataclass(frozen=True)
class AwaitDeadline:
    """The whole execution's deadline, as a real-time timer (virtual time: decided from the clocks)."""

    fires_at: datetime

    @property
    def key(self) -> tuple[str, str, int]:
        return ("await_deadline", "", 0)


@dataclass(frozen=True)
class StartChild:
    """A workflow node's child: start it (exactly once: its id is derived from the node
    run) and wait, parked, for the signal its end sends. Nothing runs for it here."""

    path: str
    run: int
    child: str
    workflow: str
    version: int | None
    input: Any
    location: str

    @property
    def key(self) -> tuple[str, str, int]:
        return ("child", self.path, self.run)


NO_TASK = (AwaitSignal, StartChild)  # activities no task performs: the execution waits for the world


Activity = Invoke | StartTimer | AwaitTimer | AwaitSignal | AwaitDeadline | StartChild


@dataclass
class Decision:
    events: list[NewEvent] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)


def error(kind: str, message: str, node: str | None, attempt: int | None = None, **extra: Any) -> dict[str, Any]:
    """The error shape of spec section 7: {kind, message, node, attempt}."""
    return {"kind": kind, "message": message, "node": node, "attempt": attempt, **extra}


def decide(workflow: Workflow, state: ExecutionState) -> Decision:
    """What follows from `state`: events to append now, activities to keep running."""
    decision = Decision()
    if state.status not in (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED):
        return decision
    if state.sequence + 1 >= workflow.limits.max_events:
        cap = workflow.limits.max_events
        message = f"the execution's log reached {state.sequence + 1} events, the limit is {cap}"
        failure = error("limit_exceeded", message, state.current, limit="max_events")
        for path, run in state.nodes.items():  # as a cancel does: what runs is stopped first
            if run.status == NodeStatus.RUNNING:
                reason = error("cancelled", f"cancelled: {message}", path)
                decision.events.append(NewEvent(EventType.NODE_CANCELLED, path, {"error": reason}))
        decision.events.append(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
        return decision
    if state.deadline_passed:
        return _timed_out(state)
    may_start = state.status == ExecutionStatus.RUNNING  # paused: nothing new starts
    walker = _Walker(state, decision, may_start, workflow.limits)
    view = StepView(state.input, state.results, state.data)
    if state.current is None:
        if may_start:
            walker.start(workflow.nodes[workflow.entrypoint], workflow.entrypoint, 1, view, state.clock)
        return decision
    node_id = state.current
    run = state.nodes[node_id]
    if run.status == NodeStatus.RUNNING:
        walker.visit(workflow.nodes[node_id], node_id, run.run, view, run.clock)
    elif run.status == NodeStatus.FAILED:
        _route_failure(workflow, state, node_id, run, walker)
    elif may_start:
        _route(workflow, state, node_id, walker)
    if state.deadline is not None and not decision.events and may_start:
        if _virtual_deadline_passed(state, decision.activities):
            return _timed_out(state)
        if not state.virtual_time:
            decision.activities.append(AwaitDeadline(state.deadline))
    return decision


def _timed_out(state: ExecutionState) -> Decision:
    """The deadline passed: like a cancel, what runs is stopped and the execution fails."""
    assert state.deadline is not None
    decision = Decision()
    message = f"the execution did not end by its deadline {rfc3339(state.deadline)}"
    for path, run in state.nodes.items():
        if run.status == NodeStatus.RUNNING:
            reason = error("timeout", f"cancelled: {message}", path)
            decision.events.append(NewEvent(EventType.NODE_CANCELLED, path, {"error": reason}))
    failure = error("timeout", message, state.current, deadline=rfc3339(state.deadline))
    decision.events.append(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
    return decision


def _virtual_deadline_passed(state: ExecutionState, activities: list[Activity]) -> bool:
    """Virtual time has no timer for the deadline: it passed when a clock went beyond
    it, or when nothing runs and the next timer (if any) would fire after it."""
    deadline = state.deadline
    if not state.virtual_time or deadline is None:
        return False
    clocks = [state.clock, *(run.clock for run in state.nodes.values())]
    if any(clock is not None and clock > deadline for clock in clocks):
        return True
    if any(isinstance(a, (Invoke, StartTimer, StartChild)) for a in activities):
        return False
    fires = [a.fires_at for a in activities if isinstance(a, AwaitTimer)]
    return not fires or min(fires) > deadline


def _started(path: str, node: Node, run: int, clock: datetime | None, state: ExecutionState, **extra: Any) -> NewEvent:
    payload: dict[str, Any] = {"run": run, "type": node.type, **extra}
    if isinstance(node, FunctionNode):
        payload["handler"] = node.handler
    elif isinstance(node, WaitNode):
        payload["signal"] = node.signal
    elif isinstance(node, WorkflowNode):
        payload["workflow"] = node.workflow
        payload["child"] = child_execution_id(state.execution_id, path, run)
    if state.virtual_time and clock is not None:
        payload["clock"] = rfc3339(clock)
    return NewEvent(EventType.NODE_STARTED, path, payload)


def _evaluate(expr: CompiledExpression, view: StepView, bound: dict[str, Any] | None = None) -> Any:
    return expr.evaluate({**view.activation(), **bound} if bound else view.activation())


def _route_failure(workflow: Workflow, state: ExecutionState, node_id: str, run: NodeRun, walker: _Walker) -> None:
    """A top-level node failed for good: take its first error edge that holds, with
    `data` = the error, or fail the execution (cancellation never gets here)."""
    edges = workflow.outgoing(node_id, "error")
    if edges and not walker.may_start:
        return  # paused: the route is taken after the resume
    failure = run.error or error("failed", f"node '{node_id}' failed", node_id)
    routed = {key: failure.get(key) for key in ("kind", "message", "node", "attempt")}
    view = StepView(state.input, state.results, routed)
    if not _take_edge(workflow, state, node_id, edges, view, walker, {"error": routed}):
        walker.decision.events.append(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))


def expression_failure(exc: ExpressionError, location: str, node: str | None, expr: CompiledExpression) -> dict[str, Any]:
    """`expression_limit` (with the expression) when it exceeded its cost bound, else `expression_error`."""
    if isinstance(exc, ExpressionLimit):
        return error("expression_limit", f"{location}: {exc}", node, location=location, expression=expr.source)
    return error("expression_error", f"{location}: {exc}", node, location=location)


def _route(workflow: Workflow, state: ExecutionState, node_id: str, walker: _Walker) -> None:
    """Take the first outgoing edge that holds, or finish the execution."""
    emit = walker.decision.events.append
    edges = workflow.outgoing(node_id)
    view = StepView(state.input, state.results, state.data)
    if not edges:
        output = state.data
        if workflow.output is not None:
            try:
                output = _evaluate(workflow.output, view)
            except ExpressionError as exc:
                failure = expression_failure(exc, "output", node_id, workflow.output)
                emit(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
                return
        emit(NewEvent(EventType.EXECUTION_COMPLETED, None, {"output": output}))
        return
    if not _take_edge(workflow, state, node_id, edges, view, walker):
        message = f"no outgoing edge of '{node_id}' holds"
        emit(NewEvent(EventType.EXECUTION_FAILED, None, {"error": error("no_route", message, node_id)}))


def _take_edge(
    workflow: Workflow,
    state: ExecutionState,
    node_id: str,
    edges: tuple[Edge, ...],
    view: StepView,
    walker: _Walker,
    bound: dict[str, Any] | None = None,
) -> bool:
    """Take the first edge that holds (its `when` sees `bound` too) and start its
    target; False when none holds. An expression error fails the execution."""
    emit = walker.decision.events.append
    for edge in edges:
        taken = state.edge_counts.get(edge.index, 0)
        if edge.max_iterations is not None and taken >= edge.max_iterations:
            continue
        if edge.when is not None:
            location = f"edges[{edge.index}].when"
            try:
                holds = _evaluate(edge.when, view, bound)
            except ExpressionError as exc:
                failure = expression_failure(exc, location, node_id, edge.when)
                emit(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
                return True
            if not isinstance(holds, bool):
                message = f"{location}: must give a boolean, gave {type(holds).__name__}"
                failure = error("expression_error", message, node_id, location=location)
                emit(NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure}))
                return True
            if not holds:
                continue
        payload: dict[str, Any] = {"from": node_id, "to": edge.target, "edge": edge.index, "iteration": taken + 1}
        if edge.on == "error":
            payload.update(on="error", error=view.data)
        emit(NewEvent(EventType.EDGE_TAKEN, node_id, payload))
        run = state.runs.get(edge.target, 0) + 1
        walker.start(workflow.nodes[edge.target], edge.target, run, view, state.clock)
        return True
    return False


@dataclass(frozen=True)
class _Done:
    output: Any
    clock: datetime | None


_RUNNING = "running"
_FAILED = "failed"
Outcome = _Done | str


class _Walker:
    """Walks the active top-level node's tree, emitting what follows."""

    def __init__(self, state: ExecutionState, decision: Decision, may_start: bool, limits: Limits) -> None:
        self.state = state
        self.decision = decision
        self.may_start = may_start
        self.limits = limits
        self.consumed: set[int] = set()  # signals taken by this decision's waits (two waits never take one)

    def emit(self, kind: str, path: str, payload: dict[str, Any]) -> None:
        self.decision.events.append(NewEvent(kind, path, payload))

    def completed(self, path: str, output: Any, clock: datetime | None) -> None:
        payload: dict[str, Any] = {"output": output}
        if self.state.virtual_time and clock is not None:
            payload["clock"] = rfc3339(clock)
        self.emit(EventType.NODE_COMPLETED, path, payload)

    def visit(self, node: Node, path: str, run_no: int, view: StepView, clock: datetime | None) -> Outcome:
        run = self.state.nodes.get(path)
        if run is None:
            if self.may_start:
                self.start(node, path, run_no, view, clock)
            return _RUNNING
        if run.status == NodeStatus.COMPLETED:
            return _Done(run.output, run.clock)
        if run.status != NodeStatus.RUNNING:
            return _FAILED
        if isinstance(node, FunctionNode):
            self.visit_function(node, run, view)
        elif isinstance(node, ConditionalNode):
            self.completed(path, view.data, run.clock)
        elif isinstance(node, DelayNode):
            self.visit_delay(node, run, view)
        elif isinstance(node, WaitNode):
            self.visit_wait(node, run)
        elif isinstance(node, WorkflowNode):
            self.visit_workflow(node, run, view)
        elif isinstance(node, SequentialNode):
            self.visit_sequential(node, run, view)
        elif isinstance(node, ParallelNode):
            children = [(child_path(path, name), child) for name, child in node.branches]
            self.visit_children(run, children, lambda _: view, node.max_concurrency, [name for name, _ in node.branches])
        else:
            items = run.items or []
            children = [(child_path(path, i), node.node) for i in range(len(items))]

            def item_view(i: int) -> StepView:
                return replace(view, item=items[i], index=i, data=items[i])

            self.visit_children(run, children, item_view, node.max_concurrency, None)
        return _RUNNING

    def start(self, node: Node, path: str, run_no: int, view: StepView, clock: datetime | None) -> None:
        if not isinstance(node, MapNode):
            self.decision.events.append(_started(path, node, run_no, clock, self.state))
            return
        try:
            items = _evaluate(node.items, view)
        except ExpressionError as exc:
            failure = expression_failure(exc, f"{node.location}.config.items", path, node.items)
        else:
            cap = self.limits.max_map_items
            if isinstance(items, list) and len(items) > cap:
                location = f"{node.location}.config.items"
                message = f"{location}: {len(items)} items, more than the limit of {cap} per map"
                failure = error("limit_exceeded", message, path, location=location, limit="max_map_items")
            elif isinstance(items, list):
                self.decision.events.append(_started(path, node, run_no, clock, self.state, items=items))
                return
            else:
                location = f"{node.location}.config.items"
                message = f"{location}: map items must be a list, got {_json_type(items)}"
                failure = error("invalid_items", message, path, location=location)
        self.decision.events.append(_started(path, node, run_no, clock, self.state))
        self.emit(EventType.NODE_FAILED, path, {"error": failure})

    def visit_function(self, node: FunctionNode, run: NodeRun, view: StepView) -> None:
        if node.input is not None:
            location = f"{node.location}.config.input"
            try:
                view = replace(view, data=_evaluate(node.input, view))
            except ExpressionError as exc:
                failure = expression_failure(exc, location, run.path, node.input)
                self.emit(EventType.NODE_FAILED, run.path, {"error": failure})
                return
        clock = _later(run.clock, run.not_before) if self.state.virtual_time else None
        self.decision.activities.append(Invoke(run.path, run.run, run.attempt, node, view, run.not_before, clock))

    def visit_delay(self, node: DelayNode, run: NodeRun, view: StepView) -> None:
        if run.fired:
            self.completed(run.path, view.data, run.clock)
        elif run.fires_at is not None:
            self.decision.activities.append(AwaitTimer(run.path, run.fires_at))
        elif node.until is None:
            self.decision.activities.append(StartTimer(run.path, node.seconds, None, run.clock))
        else:
            location = f"{node.location}.config.until"
            try:
                text = _evaluate(node.until, view)
                until = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
                if until.tzinfo is None:
                    raise ValueError("it has no time zone")
            except ExpressionError as exc:
                failure = expression_failure(exc, location, run.path, node.until)
                self.emit(EventType.NODE_FAILED, run.path, {"error": failure})
                return
            except ValueError as exc:
                failure = error("expression_error", f"{location}: {exc}", run.path, location=location)
                self.emit(EventType.NODE_FAILED, run.path, {"error": failure})
                return
            self.decision.activities.append(StartTimer(run.path, None, until, run.clock))

    def visit_wait(self, node: WaitNode, run: NodeRun) -> None:
        """Consume the earliest unconsumed signal of its name (not while paused), or wait
        for one; a timeout is a timer like a delay's, and fails the node for good."""
        if run.fired:
            message = f"no signal '{node.signal}' came within {node.timeout_s:g}s"
            self.emit(EventType.NODE_FAILED, run.path, {"error": error("timeout", message, run.path)})
            return
        signal = self.state.next_signal(node.signal, self.consumed) if self.may_start else None
        if signal is not None:
            self.consumed.add(signal["sequence"])
            payload: dict[str, Any] = {"output": signal["payload"], "signal": signal["sequence"]}
            if self.state.virtual_time and run.clock is not None:
                payload["clock"] = rfc3339(run.clock)
            self.emit(EventType.NODE_COMPLETED, run.path, payload)
            return
        self.decision.activities.append(AwaitSignal(run.path, node.signal))
        if node.timeout_s is None:
            return
        if run.fires_at is not None:
            self.decision.activities.append(AwaitTimer(run.path, run.fires_at))
        else:
            self.decision.activities.append(StartTimer(run.path, node.timeout_s, None, run.clock))

    def visit_workflow(self, node: WorkflowNode, run: NodeRun, view: StepView) -> None:
        """The child's end (a signal it sent) completes or fails the node; until then
        the child is started once and waited for. Bounded nesting: depth_exceeded."""
        assert run.child is not None
        ended = self.state.child_outcome(run.child, self.consumed)
        if ended is not None:
            self.consumed.add(ended["sequence"])
            outcome = ended["payload"]
            if outcome.get("status") == ExecutionStatus.COMPLETED:
                payload: dict[str, Any] = {"output": outcome.get("output"), "signal": ended["sequence"], "child": run.child}
                if self.state.virtual_time and run.clock is not None:
                    payload["clock"] = rfc3339(run.clock)
                self.emit(EventType.NODE_COMPLETED, run.path, payload)
                return
            cause = outcome.get("error") or {}
            message = f"child execution {run.child} ({node.workflow}) failed: {cause.get('kind')}: {cause.get('message')}"
            failure = error("child_failed", message, run.path, child=run.child, cause=cause)
            self.emit(EventType.NODE_FAILED, run.path, {"error": failure, "signal": ended["sequence"]})
            return
        cap = self.limits.max_workflow_depth
        if self.state.depth + 1 > cap:
            message = f"{node.location}: a child here would be nested {self.state.depth + 1} deep, more than the limit of {cap}"
            self.emit(EventType.NODE_FAILED, run.path, {"error": error("depth_exceeded", message, run.path, limit=cap)})
            return
        data = view.data
        if node.input is not None:
            try:
                data = _evaluate(node.input, view)
            except ExpressionError as exc:
                failure = expression_failure(exc, f"{node.location}.config.input", run.path, node.input)
                self.emit(EventType.NODE_FAILED, run.path, {"error": failure})
                return
        start = StartChild(run.path, run.run, run.child, node.workflow, node.version, data, node.location)
        self.decision.activities.append(start)

    def visit_sequential(self, node: SequentialNode, run: NodeRun, view: StepView) -> None:
        data, clock = view.data, run.clock
        for i, step in enumerate(node.steps):
            path = child_path(run.path, i)
            outcome = self.visit(step, path, run.run, replace(view, data=data), clock)
            if outcome == _FAILED:
                self.emit(EventType.NODE_FAILED, run.path, {"error": self.state.nodes[path].error})
                return
            if not isinstance(outcome, _Done):
                return
            data, clock = outcome.output, outcome.clock
        self.completed(run.path, data, clock)

    def visit_children(
        self,
        run: NodeRun,
        children: list[tuple[str, Node]],
        view_of: Callable[[int], StepView],
        limit: int,
        names: list[str] | None,
    ) -> None:
        """Parallel branches and map items: bounded concurrency, fail fast.

        Called on every decision while the parent runs, so a finished child
        costs one lookup: its view is built only when it must be visited."""
        nodes = self.state.nodes
        running = sum(1 for path, _ in children if path in nodes and nodes[path].status == NodeStatus.RUNNING)
        outputs: list[Any] = []
        clocks: list[datetime] = []
        all_done = True
        for i, (path, child) in enumerate(children):
            done = nodes.get(path)
            if done is not None and done.status == NodeStatus.COMPLETED:
                outputs.append(done.output)
                if done.clock is not None:
                    clocks.append(done.clock)
                continue
            if done is None:
                if limit and running >= limit:
                    all_done = False
                    continue
                running += 1
            outcome = self.visit(child, path, run.run, view_of(i), run.clock)
            if outcome == _FAILED:
                self.fail_fast(run, path)
                return
            if isinstance(outcome, _Done):
                outputs.append(outcome.output)
                if outcome.clock is not None:
                    clocks.append(outcome.clock)
            else:
                all_done = False
        if all_done:
            output: Any = dict(zip(names, outputs, strict=True)) if names is not None else outputs
            self.completed(run.path, output, max(clocks) if clocks else run.clock)

    def fail_fast(self, run: NodeRun, failed_path: str) -> None:
        """One child failed for good: cancel the running ones, fail the parent."""
        failure = self.state.nodes[failed_path].error
        prefixes = (run.path + ".", run.path + "[")
        for path, other in self.state.nodes.items():
            if path.startswith(prefixes) and other.status == NodeStatus.RUNNING:
                reason = error("cancelled", f"cancelled because {failed_path} failed", path)
                self.emit(EventType.NODE_CANCELLED, path, {"error": reason})
        self.emit(EventType.NODE_FAILED, run.path, {"error": failure})


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

"""Pure domain: fold(events) and decide(workflow, state) on hand-built logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.events import Event, EventType, NewEvent
from cerebelum.domain.execution import ExecutionStatus
from cerebelum.domain.orchestrator import Decision, Invoke, StartTimer, decide
from cerebelum.domain.state import ExecutionState, NodeStatus, apply, fold
from cerebelum.domain.validation import read_workflow
from cerebelum.domain.workflow import Workflow
from cerebelum.infrastructure.expressions import CelCompiler

COMPILER = CelCompiler()
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
EXEC = "exec-00000000-0000-0000-0000-000000000001"


def fn(handler: str = "h", **config: Any) -> dict[str, Any]:
    return {"type": "function", "config": {"handler": handler, **config}}


def workflow(nodes: dict[str, Any], edges: list[dict[str, Any]], entrypoint: str = "a", **extra: Any) -> Workflow:
    return read_workflow(
        {"name": "wf", "version": 1, "entrypoint": entrypoint, "nodes": nodes, "edges": edges, **extra}, COMPILER
    )


LINEAR = workflow({"a": fn("first"), "b": fn("second")}, [{"from": "a", "to": "b"}])


class Log:
    """Builds a contiguous log: each `add` takes the next sequence number."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: str, node: str | None = None, **payload: Any) -> Log:
        seq = len(self.events)
        self.events.append(Event(f"ev-{seq}", EXEC, seq, kind, node, payload, T0 + timedelta(seconds=seq)))
        return self

    def started(self, input: Any = None, clock: str = "real") -> Log:
        return self.add(
            EventType.EXECUTION_STARTED,
            workflow="wf",
            version=1,
            input={"x": 1} if input is None else input,
            seed=42,
            clock=clock,
            started_at="2026-01-01T12:00:00.000Z",
        )

    def node(self, node: str, output: Any, run: int = 1, kind: str = "function") -> Log:
        self.add(EventType.NODE_STARTED, node, run=run, type=kind)
        return self.add(EventType.NODE_COMPLETED, node, output=output, attempt=1)

    def state(self) -> ExecutionState:
        return fold(self.events)


def event(seq: int, kind: str, node: str | None = None, **payload: Any) -> Event:
    return Event(f"id-{seq}", EXEC, seq, kind, node, payload, T0)


def types(decision: Decision) -> list[tuple[str, str | None]]:
    return [(e.type, e.node_id) for e in decision.events]


# -- fold -----------------------------------------------------------------------


def test_fold_of_nothing_is_a_pending_state() -> None:
    state = fold([])
    assert state.status == ExecutionStatus.PENDING
    assert state.sequence == -1
    assert state.current is None


def test_execution_started_makes_it_running_with_input_as_data() -> None:
    state = Log().started({"total": 5}).state()
    assert state.status == ExecutionStatus.RUNNING
    assert state.execution_id == EXEC
    assert (state.workflow, state.version, state.seed) == ("wf", 1, 42)
    assert state.input == state.data == {"total": 5}
    assert state.started_at == T0
    assert state.sequence == 0
    assert state.virtual_time is False


def test_fold_tracks_results_data_and_current_node() -> None:
    state = Log().started().node("a", {"y": 2}).state()
    assert state.current == "a"
    assert state.results == {"a": {"y": 2}}
    assert state.data == {"y": 2}
    assert state.nodes["a"].status == NodeStatus.COMPLETED
    assert state.sequence == 2


def test_a_completed_execution_records_output_and_time() -> None:
    log = Log().started().node("a", 1).add(EventType.EXECUTION_COMPLETED, output={"done": True})
    state = log.state()
    assert state.status == ExecutionStatus.COMPLETED
    assert state.output == {"done": True}
    assert state.completed_at == T0 + timedelta(seconds=3)
    assert state.is_terminal


def test_completed_after_failed_is_an_illegal_transition() -> None:
    log = Log().started().add(EventType.EXECUTION_FAILED, error={"kind": "cancelled", "message": "stop"})
    assert log.state().status == ExecutionStatus.FAILED
    log.add(EventType.EXECUTION_COMPLETED, output=None)
    with pytest.raises(IllegalTransition, match="failed to completed"):
        log.state()


@pytest.mark.parametrize(
    "tail",
    [
        [EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED],
        [EventType.EXECUTION_COMPLETED, EventType.EXECUTION_COMPLETED],
        [EventType.EXECUTION_COMPLETED, EventType.EXECUTION_PAUSED],
        [EventType.EXECUTION_FAILED, EventType.EXECUTION_RESUMED],
        [EventType.EXECUTION_PAUSED, EventType.EXECUTION_COMPLETED],
        [EventType.EXECUTION_PAUSED, EventType.EXECUTION_PAUSED],
        [EventType.EXECUTION_RESUMED],
    ],
    ids=lambda tail: "-".join(t.split("_")[1] for t in tail),
)
def test_terminal_states_never_change_and_pause_rules_hold(tail: list[str]) -> None:
    log = Log().started()
    for kind in tail:
        log.add(kind)
    with pytest.raises(IllegalTransition):
        log.state()


def test_pause_resume_and_fail_while_paused_are_allowed() -> None:
    log = Log().started().add(EventType.EXECUTION_PAUSED)
    assert log.state().status == ExecutionStatus.PAUSED
    log.add(EventType.EXECUTION_RESUMED)
    assert log.state().status == ExecutionStatus.RUNNING
    log.add(EventType.EXECUTION_PAUSED).add(EventType.EXECUTION_FAILED, error={"kind": "cancelled"})
    state = log.state()
    assert state.status == ExecutionStatus.FAILED
    assert state.error == {"kind": "cancelled"}


def test_a_log_must_start_with_execution_started_to_complete() -> None:
    with pytest.raises(IllegalTransition):
        fold([event(0, EventType.EXECUTION_COMPLETED, output=1)])


def test_a_sequence_gap_raises() -> None:
    events = Log().started().node("a", 1).events
    with pytest.raises(IllegalTransition, match="gap"):
        fold([events[0], events[2]])


def test_a_duplicate_sequence_raises() -> None:
    events = Log().started().events
    with pytest.raises(IllegalTransition):
        fold([events[0], events[0]])


def test_a_log_that_does_not_start_at_zero_raises() -> None:
    with pytest.raises(IllegalTransition):
        fold([event(1, EventType.EXECUTION_STARTED)])


def test_an_unknown_event_type_raises() -> None:
    log = Log().started().add("node_teleported", "a")
    with pytest.raises(IllegalTransition, match="unknown event type"):
        log.state()


def test_fold_from_a_checkpoint_equals_the_full_fold() -> None:
    log = Log().started().node("a", {"v": 1}).add(EventType.EDGE_TAKEN, "a", edge=0, to="b", iteration=1)
    log.node("b", {"v": 2}).add(EventType.EXECUTION_COMPLETED, output={"v": 2})
    full = fold(log.events).to_json()
    for k in range(len(log.events) + 1):
        assert fold(log.events[k:], fold(log.events[:k])).to_json() == full


def test_state_json_round_trips() -> None:
    log = Log().started(clock="virtual").node("a", {"v": 1}).add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1)
    log.add(EventType.NODE_STARTED, "b", run=1, type="function")
    log.add(EventType.ATTEMPT_FAILED, "b", attempt=1, error={"kind": "handler_error"}, retry_at="2026-01-01T12:00:05.000Z")
    state = log.state()
    assert state.nodes["b"].attempt == 2
    assert state.edge_counts == {0: 1}
    assert ExecutionState.from_json(state.to_json()).to_json() == state.to_json()
    assert ExecutionState.from_json(state.to_json()) == state


def test_checkpoint_created_changes_nothing() -> None:
    log = Log().started().node("a", 1)
    before = log.state().to_json()
    log.add(EventType.CHECKPOINT_CREATED, state=before)
    after = log.state().to_json()
    assert after.pop("sequence") == before.pop("sequence") + 1
    assert after == before


def test_apply_mutates_and_returns_the_same_state() -> None:
    events = Log().started().events
    state = ExecutionState()
    assert apply(state, events[0]) is state
    assert state.sequence == 0


# -- decide ---------------------------------------------------------------------


def test_decide_on_a_pending_state_does_nothing() -> None:
    decision = decide(LINEAR, ExecutionState())
    assert decision == Decision()


def test_decide_after_execution_started_starts_the_entrypoint() -> None:
    decision = decide(LINEAR, Log().started().state())
    assert decision.events == [NewEvent(EventType.NODE_STARTED, "a", {"run": 1, "type": "function", "handler": "first"})]
    assert decision.activities == []


def test_decide_in_virtual_time_stamps_the_clock() -> None:
    decision = decide(LINEAR, Log().started(clock="virtual").state())
    assert decision.events[0].payload["clock"] == "2026-01-01T12:00:00.000Z"


def test_a_running_function_node_is_an_invoke_activity() -> None:
    state = Log().started({"x": 7}).add(EventType.NODE_STARTED, "a", run=1, type="function").state()
    decision = decide(LINEAR, state)
    assert decision.events == []
    [activity] = decision.activities
    assert isinstance(activity, Invoke)
    assert (activity.path, activity.run, activity.attempt, activity.node.handler) == ("a", 1, 1, "first")
    assert activity.view.data == {"x": 7}
    assert activity.not_before is None


def test_a_failed_attempt_is_invoked_again_with_the_next_attempt() -> None:
    log = Log().started().add(EventType.NODE_STARTED, "a", run=1, type="function")
    log.add(EventType.ATTEMPT_FAILED, "a", attempt=1, error={"kind": "handler_error"}, retry_at="2026-01-01T12:00:10.000Z")
    [activity] = decide(LINEAR, log.state()).activities
    assert isinstance(activity, Invoke)
    assert activity.attempt == 2
    assert activity.not_before == T0 + timedelta(seconds=10)


def test_after_a_function_node_completes_the_edge_is_taken_and_the_next_node_starts() -> None:
    state = Log().started().node("a", {"y": 1}).state()
    decision = decide(LINEAR, state)
    assert decision.events == [
        NewEvent(EventType.EDGE_TAKEN, "a", {"from": "a", "to": "b", "edge": 0, "iteration": 1}),
        NewEvent(EventType.NODE_STARTED, "b", {"run": 1, "type": "function", "handler": "second"}),
    ]
    assert decision.activities == []


def test_a_terminal_node_completes_the_execution_with_its_output() -> None:
    log = Log().started().node("a", 1).add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1).node("b", {"z": 3})
    assert decide(LINEAR, log.state()).events == [NewEvent(EventType.EXECUTION_COMPLETED, None, {"output": {"z": 3}})]


def test_the_output_expression_gives_the_execution_output() -> None:
    wf = workflow({"a": fn()}, [], output="{'first': results.a, 'in': input.x}")
    decision = decide(wf, Log().started({"x": 4}).node("a", "out").state())
    assert decision.events == [NewEvent(EventType.EXECUTION_COMPLETED, None, {"output": {"first": "out", "in": 4}})]


def test_a_node_failed_for_good_fails_the_execution() -> None:
    failure = {"kind": "handler_error", "message": "boom", "node": "a", "attempt": 1}
    log = Log().started().add(EventType.NODE_STARTED, "a", run=1, type="function").add(EventType.NODE_FAILED, "a", error=failure)
    assert decide(LINEAR, log.state()).events == [NewEvent(EventType.EXECUTION_FAILED, None, {"error": failure})]


def test_a_terminal_execution_decides_nothing() -> None:
    log = Log().started().node("a", 1).add(EventType.EXECUTION_FAILED, error={"kind": "cancelled"})
    assert decide(LINEAR, log.state()) == Decision()


ROUTER = workflow(
    {"a": fn(), "route": {"type": "conditional"}, "big": fn("big"), "small": fn("small")},
    [
        {"from": "a", "to": "route"},
        {"from": "route", "to": "big", "when": "data.total > 100"},
        {"from": "route", "to": "small"},
    ],
)


@pytest.mark.parametrize(("total", "target", "edge"), [(500, "big", 1), (5, "small", 2)])
def test_a_conditional_passes_data_through_and_routes_by_the_first_edge_that_holds(total: int, target: str, edge: int) -> None:
    log = Log().started().node("a", {"total": total}).add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1)
    log.add(EventType.NODE_STARTED, "route", run=1, type="conditional")
    decision = decide(ROUTER, log.state())
    assert decision.events == [NewEvent(EventType.NODE_COMPLETED, "route", {"output": {"total": total}})]
    log.add(EventType.NODE_COMPLETED, "route", output={"total": total})
    decision = decide(ROUTER, log.state())
    assert types(decision) == [(EventType.EDGE_TAKEN, "route"), (EventType.NODE_STARTED, target)]
    assert decision.events[0].payload == {"from": "route", "to": target, "edge": edge, "iteration": 1}


def test_a_when_that_raises_fails_the_execution_at_its_location() -> None:
    log = Log().started().node("a", {"nothing": 0}).add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1)
    log.node("route", {"nothing": 0}, kind="conditional")
    [failed] = decide(ROUTER, log.state()).events
    assert failed.type == EventType.EXECUTION_FAILED
    error = failed.payload["error"]
    assert error["kind"] == "expression_error"
    assert error["location"] == "edges[1].when"
    assert error["node"] == "route"


def test_no_edge_holding_fails_the_execution_naming_the_node() -> None:
    wf = workflow({"a": fn(), "b": fn()}, [{"from": "a", "to": "b", "when": "data > 10"}])
    [failed] = decide(wf, Log().started().node("a", 1).state()).events
    assert failed.type == EventType.EXECUTION_FAILED
    assert failed.payload["error"]["kind"] == "no_route"
    assert "'a'" in failed.payload["error"]["message"]


def test_an_exhausted_max_iterations_edge_counts_as_not_holding() -> None:
    wf = workflow(
        {"a": fn(), "b": fn()},
        [{"from": "a", "to": "a", "max_iterations": 2}, {"from": "a", "to": "b"}],
    )
    log = Log().started().node("a", 1)
    decision = decide(wf, log.state())
    assert decision.events[0].payload == {"from": "a", "to": "a", "edge": 0, "iteration": 1}
    assert decision.events[1] == NewEvent(EventType.NODE_STARTED, "a", {"run": 2, "type": "function", "handler": "h"})
    log.add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1).node("a", 2, run=2)
    log.add(EventType.EDGE_TAKEN, "a", edge=0, iteration=2).node("a", 3, run=3)
    state = log.state()
    assert state.runs == {"a": 3}
    assert state.edge_counts == {0: 2}
    decision = decide(wf, state)
    assert types(decision) == [(EventType.EDGE_TAKEN, "a"), (EventType.NODE_STARTED, "b")]
    assert decision.events[0].payload["edge"] == 1


def test_decide_is_pure() -> None:
    logs = [
        Log().started(),
        Log().started().node("a", {"y": 1}),
        Log().started().add(EventType.NODE_STARTED, "a", run=1, type="function"),
        Log().started().node("a", 1).add(EventType.EDGE_TAKEN, "a", edge=0, iteration=1).node("b", 2),
    ]
    for log in logs:
        state = log.state()
        before = state.to_json()
        first = decide(LINEAR, state)
        second = decide(LINEAR, state)
        assert first == second
        assert state.to_json() == before
        assert state == fold(log.events)


def test_a_paused_state_starts_no_node() -> None:
    log = Log().started().node("a", {"y": 1}).add(EventType.EXECUTION_PAUSED)
    decision = decide(LINEAR, log.state())
    assert decision.events == []
    assert decision.activities == []
    log.add(EventType.EXECUTION_RESUMED)
    assert types(decide(LINEAR, log.state())) == [(EventType.EDGE_TAKEN, "a"), (EventType.NODE_STARTED, "b")]


def test_a_paused_state_before_the_entrypoint_starts_nothing() -> None:
    log = Log().started().add(EventType.EXECUTION_PAUSED)
    assert decide(LINEAR, log.state()) == Decision()


def test_a_paused_state_keeps_running_work_but_starts_no_child() -> None:
    wf = workflow(
        {"m": {"type": "map", "config": {"items": "input", "node": fn("each"), "max_concurrency": 1}}}, [], entrypoint="m"
    )
    log = Log().started([10, 20]).add(EventType.NODE_STARTED, "m", run=1, type="map", items=[10, 20])
    log.add(EventType.NODE_STARTED, "m[0]", run=1, type="function")
    running = decide(wf, log.state())
    assert running.events == []
    assert [a.path for a in running.activities] == ["m[0]"]
    log.add(EventType.EXECUTION_PAUSED).add(EventType.NODE_COMPLETED, "m[0]", output=11, attempt=1)
    paused = decide(wf, log.state())
    assert not [e for e in paused.events if e.type == EventType.NODE_STARTED]
    log.add(EventType.EXECUTION_RESUMED)
    resumed = decide(wf, log.state())
    assert types(resumed) == [(EventType.NODE_STARTED, "m[1]")]


def test_a_map_starts_its_items_up_to_max_concurrency() -> None:
    wf = workflow(
        {"m": {"type": "map", "config": {"items": "input", "node": fn("each"), "max_concurrency": 2}}}, [], entrypoint="m"
    )
    state = Log().started(["p", "q", "r"]).state()
    decision = decide(wf, state)
    assert decision.events == [
        NewEvent(EventType.NODE_STARTED, "m", {"run": 1, "type": "map", "items": ["p", "q", "r"]}),
    ]
    log = Log().started(["p", "q", "r"]).add(EventType.NODE_STARTED, "m", run=1, type="map", items=["p", "q", "r"])
    assert types(decide(wf, log.state())) == [(EventType.NODE_STARTED, "m[0]"), (EventType.NODE_STARTED, "m[1]")]


def test_a_map_over_a_non_list_fails_the_node() -> None:
    wf = workflow({"m": {"type": "map", "config": {"items": "input", "node": fn("each")}}}, [], entrypoint="m")
    decision = decide(wf, Log().started({"not": "a list"}).state())
    assert types(decision) == [(EventType.NODE_STARTED, "m"), (EventType.NODE_FAILED, "m")]
    assert decision.events[1].payload["error"]["kind"] == "invalid_items"


def test_a_delay_asks_for_a_timer_then_completes_when_it_fired() -> None:
    wf = workflow({"d": {"type": "delay", "config": {"seconds": 30}}}, [], entrypoint="d")
    log = Log().started("payload").add(EventType.NODE_STARTED, "d", run=1, type="delay")
    [timer] = decide(wf, log.state()).activities
    assert isinstance(timer, StartTimer)
    assert timer.seconds == 30
    log.add(EventType.TIMER_STARTED, "d", fires_at="2026-01-01T12:00:30.000Z")
    log.add(EventType.TIMER_FIRED, "d")
    decision = decide(wf, log.state())
    assert decision.events == [NewEvent(EventType.NODE_COMPLETED, "d", {"output": "payload"})]

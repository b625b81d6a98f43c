"""Use case ForkExecution (interaction.md section 8): start again from where it failed.

A terminal execution never changes; a fork is a new execution whose log
starts with a copy of the source's events up to a settled point and runs on
with the handlers loaded now, so completed nodes keep their recorded outputs
(their handlers are not called again) and a fixed handler gets its chance.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cerebelum.application.runner import project
from cerebelum.domain.errors import IllegalTransition, NotFound
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution, ExecutionStatus, execution_id_from_uuid
from cerebelum.domain.orchestrator import decide
from cerebelum.domain.state import fold
from cerebelum.domain.workflow import Workflow

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

# What a failure's cascade is made of: a node failing for good, the branches it
# cancels, the execution failing, and the timer whose firing started it.
_CASCADE = {EventType.NODE_FAILED, EventType.NODE_CANCELLED, EventType.EXECUTION_FAILED, EventType.CHECKPOINT_CREATED}


class OutOfRange(NotFound):
    """`at` names no event of the log."""


def failure_start(log: list[Event]) -> int:
    """The sequence just before the first event of the failure that ended the log
    (its last event when it did not end in a failure)."""
    if log[-1].type != EventType.EXECUTION_FAILED:
        return log[-1].sequence
    first = len(log) - 1
    while first > 0 and log[first - 1].type in _CASCADE:
        first -= 1
    return log[first].sequence - 1


def settled_point(workflow: Workflow, log: list[Event], at: int) -> int:
    """The nearest point at or before `at` where the orchestrator had nothing more
    to add, the execution was not terminal, and no timer had fired to fail a node:
    a fired timeout or a passed deadline would only fail the fork again."""
    for point in range(at, 0, -1):
        event = log[point]
        if event.type == EventType.TIMER_FIRED:
            continue
        if event.type == EventType.TIMER_STARTED and _fired_later(log, point, at):
            continue
        state = fold(log[: point + 1])
        if state.is_terminal:
            continue
        if not decide(workflow, state).events:
            return point
    return 0  # just the start: the fork runs the whole workflow again, with the same input and seed


def _fired_later(log: list[Event], started: int, at: int) -> bool:
    node = log[started].node_id
    return any(e.type == EventType.TIMER_FIRED and e.node_id == node for e in log[started + 1 : at + 2])


async def fork_execution(host: ExecutionHost, execution_id: str, at: int | None = None) -> Execution:
    """The new execution (claimable at once), `forked_from` {source, sequence}."""
    store = host.store
    source = await host.call(store.executions.get, execution_id)
    log = await host.call(store.events.read, execution_id)
    if not log:
        raise IllegalTransition(f"execution {execution_id} has not started: there is nothing to fork (start it again)")
    last = log[-1].sequence
    if at is not None and not (isinstance(at, int) and 0 <= at <= last):
        raise OutOfRange(f"at: {at} is outside the log of {execution_id} (0..{last})")
    workflow = await host.workflow_of(source)
    wanted = failure_start(log) if at is None else at
    point = await host.call(settled_point, workflow, log, max(0, wanted))
    new_id = execution_id_from_uuid(host.ids.new_id())
    copied = [replace(e, id=host.ids.new_id(), execution_id=new_id) for e in log[: point + 1]]
    state = fold(copied)
    # The source's row, but for what makes the fork an execution of its own: its id and
    # creation, no caller key, no schedule tick, no parent waiting for it, no queue slot yet.
    row = source.evolve(
        id=new_id,
        status=ExecutionStatus.PENDING,
        created_at=host.clock.now(),
        control=None,
        key=None,
        schedule_name=None,
        schedule_tick=None,
        parent_id=None,
        parent_node=None,
        first_claimed_at=None,
        signals_sent=len(state.signals),
        forked_from=source.id,
        forked_at=point,
        code_version=state.code_version,
    )
    row = project(row, state)
    await host.call(store.executions.create_with_history, row, copied)
    host.notify_pool()
    return row

"""Use cases PauseExecution, ResumeExecution, CancelExecution.

A request is written to the execution row. Whoever holds the execution's
lease acts on it at its next append or heartbeat (so a pause takes effect
before the next node starts); if nobody holds it (queued, parked on a timer,
paused), this use case takes the lease itself, records the transition and
hands the execution back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cerebelum.application.runner import ExecutionRunner
from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.execution import Control, Execution, ExecutionStatus, Lease
from cerebelum.domain.ports import ExecutionQueue

ALLOWED_FROM = {
    Control.PAUSE: (ExecutionStatus.PENDING, ExecutionStatus.RUNNING),
    Control.RESUME: (ExecutionStatus.PAUSED,),
    Control.CANCEL: (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED),
}


def check_request(execution: Execution, control: str) -> None:
    """Raise IllegalTransition for a request the status machine forbids."""
    if control not in ALLOWED_FROM:
        raise IllegalTransition(f"unknown request {control!r}")
    if execution.status not in ALLOWED_FROM[control]:
        raise IllegalTransition(f"cannot {control} execution {execution.id}: it is {execution.status}")


async def control_execution(
    execution_id: str,
    control: str,
    queue: ExecutionQueue,
    get: Callable[[str], Awaitable[Execution]],
    db: Callable[..., Awaitable[object]],
    make_runner: Callable[[Execution, Lease], Awaitable[ExecutionRunner]],
    owner: str,
    ttl: float,
) -> Execution:
    """Request the transition; carry it out at once if nobody holds the execution."""
    check_request(await get(execution_id), control)
    await db(queue.request, execution_id, control)
    lease = await db(queue.claim_one, execution_id, owner, ttl)
    if isinstance(lease, Lease):
        runner = await make_runner(await get(execution_id), lease)
        await runner.act_alone()
    return await get(execution_id)

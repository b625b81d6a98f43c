"""Use cases PauseExecution, ResumeExecution, CancelExecution.

A request is written to the execution row. Whoever holds the execution's
lease acts on it at its next append or heartbeat (so a pause takes effect
before the next node starts); if nobody holds it (queued, parked on a timer,
paused), this use case takes the lease itself, records the transition and
hands the execution back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.execution import Control, Execution, ExecutionStatus

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

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


async def control_execution(host: ExecutionHost, execution_id: str, control: str) -> Execution:
    """Request the transition; carry it out at once if nobody holds the execution."""
    store = host.store
    check_request(await host.call(store.executions.get, execution_id), control)
    await host.call(store.queue.request, execution_id, control)
    lease = await host.call(store.queue.claim_one, execution_id, host.owner, host.settings.lease_ttl)
    if lease is not None:
        runner = await host.control_runner(await host.call(store.executions.get, execution_id), lease)
        await runner.act_alone()
    if control == Control.RESUME:
        host.notify_pool()
    return await host.call(store.executions.get, execution_id)

"""Use cases PauseExecution, ResumeExecution, CancelExecution.

A request is written to the execution row. Whoever holds the execution's
lease acts on it at its next append or heartbeat (so a pause takes effect
before the next node starts); if nobody holds it (queued, parked on a timer,
paused), this use case takes the lease itself, records the transition and
hands the execution back.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.execution import Control, Execution, ExecutionStatus, Lease

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

log = logging.getLogger("cerebelum.control")
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
    """Request the transition; carry it out at once if nobody holds the execution.

    Once the request is committed it is the answer: if carrying it out here
    fails (the database went away), whoever claims the execution next acts
    on it, so the caller gets the row with its request pending, not an error
    after a commit."""
    store = host.store
    check_request(await host.call(store.executions.get, execution_id), control)
    requested = await host.call(store.queue.request, execution_id, control)
    lease: Lease | None = None
    try:
        lease = await host.call(store.queue.claim_one, execution_id, host.owner, host.settings.lease_ttl)
        if lease is not None:
            runner = await host.control_runner(await host.call(store.executions.get, execution_id), lease)
            await runner.act_alone()
            lease = None  # act_alone hands it back
        if control == Control.RESUME:
            host.notify_pool()
        return await host.call(store.executions.get, execution_id)
    except Exception as exc:
        log.warning("%s of %s is recorded; carrying it out here failed (%s), the next claim will", control, execution_id, exc)
        with contextlib.suppress(Exception):
            if lease is not None:
                await host.call(store.queue.release, lease, None)
            return await host.call(store.executions.get, execution_id)  # what was committed, if it can be read
        return requested

"""Use case SendSignal (interaction.md section 1): talk to a running execution.

The signal is kept in the execution's inbox (one transaction with a count on
its row, deduplicated by key); the acknowledgement is its `signal_received`
event in the log, whose sequence the sender gets. Whoever holds the
execution's lease appends it: a runner of this process at once (poked), one
of another process at its next heartbeat, and when nobody holds it (parked
on a `wait`, queued, paused) the sender takes the lease, appends it and
hands the execution back, which wakes it for any worker at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cerebelum.domain.errors import Conflict, Problem, StoreUnavailable, ValidationError
from cerebelum.domain.limits import configured
from cerebelum.domain.validation import SIGNAL_NAME_RE
from cerebelum.domain.values import value_problem

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

DELIVERY_TIMEOUT_S = 60.0  # longer than a lease: a holder that died has lost it by then


@dataclass(frozen=True)
class SignalSent:
    execution_id: str
    signal: str
    sequence: int
    repeated: bool  # the key was used before on this execution: nothing new was appended

    def to_json(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "signal": self.signal, "sequence": self.sequence}


def check_signal(name: Any, payload: Any, key: Any) -> None:
    """Located problems with a signal, all at once."""
    problems = []
    if not isinstance(name, str) or not SIGNAL_NAME_RE.match(name):
        problems.append(("signal", "a signal's name is 1-100 characters of [A-Za-z0-9_.-]"))
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        problems.append(("key", "a key is a string of 1-200 characters"))
    problem = value_problem(payload, configured().max_value_depth)
    if problem is not None:
        problems.append(("payload", problem))
    if problems:
        raise ValidationError([Problem(where, message) for where, message in problems])


async def send_signal(
    host: ExecutionHost, execution_id: str, name: str, payload: Any = None, key: str | None = None
) -> SignalSent:
    """Offer the signal and return once it is in the execution's log (its sequence).
    NotFound for an unknown execution; Conflict for one that is or became terminal."""
    check_signal(name, payload, key)
    store = host.store
    signal_id, repeated = await host.call(store.signals.offer, execution_id, name, payload, key, host.clock.now())
    host.poke_inbox(execution_id)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    pause = 0.002
    look = repeated  # a fresh signal is not in the log yet: try to take the execution first
    while True:
        if look:
            sequence = await host.call(store.signals.sequence_of, execution_id, signal_id)
            if sequence is not None:
                return SignalSent(execution_id, name, sequence, repeated)
        look = True
        lease = await host.call(store.queue.claim_one, execution_id, host.owner, host.settings.lease_ttl)
        if lease is not None:  # nobody holds it: append it here and hand the execution back
            execution = await host.call(store.executions.get, execution_id)
            runner = await host.control_runner(execution, lease)
            await runner.act_alone()
            host.notify_pool()
            appended = next((s["sequence"] for s in runner.state.signals if s["id"] == signal_id), None)
            if appended is not None and not runner.lost:
                return SignalSent(execution_id, name, appended, repeated)
            continue
        execution = await host.call(store.executions.get, execution_id)
        if execution.is_terminal:
            sequence = await host.call(store.signals.sequence_of, execution_id, signal_id)
            if sequence is not None:  # taken just before the end
                return SignalSent(execution_id, name, sequence, repeated)
            raise Conflict(f"execution {execution_id} is {execution.status}: the signal '{name}' was not delivered")
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"signal '{name}' is kept for {execution_id} but its holder has not taken it within "
                f"{DELIVERY_TIMEOUT_S:g}s; it will be delivered when the execution next runs"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)

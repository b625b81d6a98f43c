"""Use case SendSignal (interaction.md section 1): talk to a running execution.

The signal is kept in the execution's inbox (one transaction with a count on
its row, deduplicated by key); the acknowledgement is its `signal_received`
event in the log, whose sequence the sender gets. When nobody holds the
execution (parked on a `wait`, paused, between two claims) the offer's own
transaction appends it and makes the execution claimable, which wakes it for
any worker at once. Otherwise whoever holds the lease appends it: a runner of
this process at once (poked), one of another process at its next heartbeat;
an execution that has not begun its log is taken by the sender, which
appends it after `execution_started` and hands it back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cerebelum.domain.errors import Conflict, Problem, StoreUnavailable, ValidationError
from cerebelum.domain.limits import configured
from cerebelum.domain.ports import EventStamp, Offered
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


async def offer_signal(host: ExecutionHost, execution_id: str, name: str, payload: Any, key: str | None) -> Offered:
    """Into the inbox; into the log too when nobody holds the execution (then it is
    claimable: this process's pool is woken, other processes by NOTIFY), else the
    holder of this process, if any, is poked to take it."""
    now = host.clock.now()
    stamp = EventStamp(host.ids.new_id(), now, host.settings.engine_version, host.code_version(), host.owner)
    offered = await host.call(host.store.signals.offer, execution_id, name, payload, key, now, stamp)
    if offered.event is not None:
        host.feed.publish(offered.event)
        host.notify_pool()
    elif not offered.repeated:
        host.poke_inbox(execution_id)
    return offered


async def send_signal(
    host: ExecutionHost, execution_id: str, name: str, payload: Any = None, key: str | None = None
) -> SignalSent:
    """Offer the signal and return once it is in the execution's log (its sequence).
    NotFound for an unknown execution; Conflict for one that is or became terminal."""
    check_signal(name, payload, key)
    store = host.store
    offered = await offer_signal(host, execution_id, name, payload, key)
    signal_id, repeated = offered.id, offered.repeated
    if offered.event is not None:
        return SignalSent(execution_id, name, offered.event.sequence, repeated)
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

"""Use case RunChildWorkflow (interaction.md section 4): a `workflow` node's child.

The child is started through the same execute use case as any execution
(`start_execution`), with its id derived from the parent's id, the node's path
and run, so a parent whose worker crashed between starting the child and
recording anything starts no second one: the database refuses the id.

The child's end reaches the parent as a signal (`cerebelum.child`, keyed by
the child's id) in the parent's inbox, so it travels exactly like a user's
signal: the parent's log records it, replay serves it, a parked parent is
woken. A parent parked on a child also looks at it now and then
(`runner.CHILD_RECHECK_S`), in case the child's process died between its end
and the signal; a parent that ends cancels its unfinished children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cerebelum.application.control_execution import control_execution
from cerebelum.application.execute_workflow import ChildLink, start_execution
from cerebelum.application.signals import offer_signal
from cerebelum.domain.errors import Conflict, NotFound
from cerebelum.domain.events import EventType, NewEvent
from cerebelum.domain.execution import CHILD_SIGNAL, Control, Execution, child_seed
from cerebelum.domain.orchestrator import StartChild, error
from cerebelum.domain.state import ExecutionState

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

log = logging.getLogger("cerebelum.children")


def child_end(execution: Execution) -> dict[str, Any]:
    """What a parent learns of its child's end (the signal's payload)."""
    return {"child": execution.id, "status": execution.status, "output": execution.output, "error": execution.error}


class Children:
    """The host's side of the runner's `Family` port."""

    def __init__(self, host: ExecutionHost) -> None:
        self.host = host
        self.running_here: dict[str, asyncio.Task[Any]] = {}

    async def ensure(
        self, parent: Execution, state: ExecutionState, start: StartChild, here: bool
    ) -> tuple[list[NewEvent], bool]:
        host, store = self.host, self.host.store
        try:
            child = await host.call(store.executions.get, start.child)
        except NotFound:
            try:
                child = await self._start(parent, state, start, here)
            except NotFound as exc:
                where = f"{start.location}.config.workflow"
                message = f"{where}: cannot start a child of workflow '{start.workflow}': {exc}"
                failure = error("unknown_workflow", message, start.path, location=where, workflow=start.workflow)
                return [NewEvent(EventType.NODE_FAILED, start.path, {"error": failure})], False
        if child.is_terminal:  # it ended and its signal may not have been sent (its process died): send it again
            await self.tell_parent(child)
            return [], True
        if here:
            self._run_here(child)
        return [], False

    async def _start(self, parent: Execution, state: ExecutionState, start: StartChild, here: bool) -> Execution:
        host, store = self.host, self.host.store
        stored = await host.call(store.workflows.get, start.workflow, start.version)
        if stored.deleted:
            raise NotFound(f"workflow {stored.name} version {stored.version} was deleted")
        link = ChildLink(start.child, parent.id, start.path, state.depth + 1)
        owner = host.owner if here else None
        try:
            child, lease = await host.call(
                lambda: start_execution(
                    stored, start.input, store, host.clock, host.ids,
                    seed=child_seed(state.seed, start.path, start.run), virtual_time=state.virtual_time,
                    owner=owner, ttl=host.settings.lease_ttl, child=link,
                )
            )  # fmt: skip
        except Conflict:  # started meanwhile by another runner of the same parent: the same child
            return await host.call(store.executions.get, start.child)
        if lease is not None:
            self._run_here(child, lease)
        elif here:
            self._run_here(child)  # its queue has limits: it runs here once it has a slot
        else:
            host.notify_pool()
        return child

    def _run_here(self, child: Execution, lease: Any = None) -> None:
        """`run DEF`: children run in this process too, to the end."""
        if child.id in self.running_here and not self.running_here[child.id].done():
            return
        self.running_here[child.id] = asyncio.ensure_future(self._drive(child, lease))

    async def _drive(self, child: Execution, lease: Any) -> None:
        host = self.host
        try:
            if lease is None:  # here once nobody holds it and its queue gives it a slot, else until it ends
                await host.join(child)  # (a worker's end of it reaches the parent all the same)
                return
            await host.run_here(child, lease)
        except Exception as exc:  # the child's own runner records its failures; this is the host failing
            log.warning("child %s could not be run here: %s", child.id, exc)
        finally:
            self.running_here.pop(child.id, None)

    async def ended(self, execution: Execution) -> None:
        with contextlib.suppress(Exception):  # best effort: a parent re-checks its children on its own
            if execution.parent_id is not None:
                await self.tell_parent(execution)
            await self.cancel_children(execution)

    async def tell_parent(self, child: Execution) -> None:
        assert child.parent_id is not None
        host, store = self.host, self.host.store
        try:
            offered = await offer_signal(host, child.parent_id, CHILD_SIGNAL, child_end(child), child.id)
        except (Conflict, NotFound):
            return  # the parent ended (or was purged) meanwhile
        if offered.event is None:  # held (a runner of this process was poked), or not begun: wake it if parked
            await host.call(store.queue.wake, child.parent_id)

    async def cancel_children(self, parent: Execution) -> None:
        host = self.host
        live = ("pending", "running", "paused")
        for child in await host.call(host.store.executions.list, None, live, 10_000, 0, parent.id):
            with contextlib.suppress(Exception):
                await control_execution(host, child.id, Control.CANCEL)

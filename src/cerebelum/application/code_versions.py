"""Code versions and safe deploys (interaction spec section 10, docs/deploys.md).

Every process that runs handlers has a code version: given (`--code-version`,
`CEREBELUM_CODE_VERSION`, `Engine(code_version=)`) or a hash of its handler
modules' source. An execution takes the code version of the process that
first runs it; the runner records a change before a process with another one
continues it (`versioning: upgrade`), or the claim leaves it to its own
(`pinned`). `upgrade_executions` moves executions to the caller's version on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cerebelum.application.execute_workflow import InvalidInput
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.application.runner import changed_event
from cerebelum.domain.errors import Conflict, IllegalTransition, NotFound
from cerebelum.domain.execution import Execution, ExecutionStatus

if TYPE_CHECKING:
    from cerebelum.application.host import ExecutionHost

CODE_VERSION_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
CODE_VERSION_RULE = "1-64 characters of [A-Za-z0-9_.:+-]"


def check_code_version(value: str, where: str) -> str:
    """The value, or InvalidInput naming `where` (the option, variable or parameter it came from)."""
    if not isinstance(value, str) or not CODE_VERSION_RE.match(value):
        raise InvalidInput(f"{where}: must be {CODE_VERSION_RULE}, not {value!r}")
    return value


class CodeVersion:
    """This process's code version: the one given, else the hash of the source of
    the modules of the registered handlers (computed again only when handlers
    are added, so registering after the Engine is built still counts)."""

    def __init__(self, handlers: HandlerRegistry, given: str | None, hasher: Callable[[Iterable[Callable[..., Any]]], str]):
        self.handlers = handlers
        self.given = given
        self.hasher = hasher
        self._hashed: tuple[int, str] | None = None

    def current(self) -> str:
        if self.given is not None:
            return self.given
        count = len(self.handlers)
        if self._hashed is None or self._hashed[0] != count:
            self._hashed = (count, self.hasher(handler.func for handler in self.handlers))
        return self._hashed[1]


async def upgrade_execution(host: ExecutionHost, execution_id: str, code_version: str) -> Execution:
    """Move one execution to `code_version`, recording `code_version_changed`.

    NotFound for an unknown id, IllegalTransition for an ended one, Conflict
    while a worker holds it (try again once it is left). An execution no
    process ran yet has no code version to move: the first one that runs it
    fixes it; it is returned unchanged, as is one already on `code_version`."""
    store = host.store
    execution = await host.call(store.executions.get, execution_id)
    if execution.is_terminal:
        raise IllegalTransition(f"cannot upgrade execution {execution_id}: it is {execution.status}")
    if execution.code_version in (None, code_version):
        return execution
    lease = await host.call(store.queue.claim_one, execution_id, host.owner, host.settings.lease_ttl)
    if lease is None:
        raise Conflict(f"execution {execution_id} is held by a worker (code version {execution.code_version}); try again")
    try:
        execution = await host.call(store.executions.get, execution_id)
        runner = await host.control_runner(execution, lease)
        if runner.state.is_terminal or runner.state.code_version == code_version:
            await host.call(store.queue.release, lease, None)
            return await host.call(store.executions.get, execution_id)
        runner.record(changed_event(runner.state.code_version, code_version, "upgrade"))
        await runner.act_alone()  # writes it and hands the execution back
    except BaseException:
        await host.call(store.queue.release, lease, None)
        raise
    host.notify_pool()
    return await host.call(store.executions.get, execution_id)


async def upgrade_executions(host: ExecutionHost, workflow: str, from_version: str, code_version: str) -> list[Execution]:
    """Every execution of `workflow` not ended whose code version is `from_version`, moved to `code_version`."""
    live = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
    moved: list[Execution] = []
    offset, page = 0, 500
    while True:
        batch = await host.call(host.store.executions.list, workflow, live, page, offset)
        for execution in batch:
            if execution.code_version == from_version:
                try:
                    moved.append(await upgrade_execution(host, execution.id, code_version))
                except NotFound:
                    continue  # purged meanwhile
        if len(batch) < page:
            return moved
        offset += page

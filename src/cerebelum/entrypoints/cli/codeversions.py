"""Code versions on the command line (docs/deploys.md): `executions upgrade`, and
the code version line of `status`.

`executions upgrade` lives in a group of its own here so that it merges
cleanly with the `executions` group (`list`, `purge`) built elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from cerebelum.application.code_versions import upgrade_execution, upgrade_executions
from cerebelum.domain.execution import Execution
from cerebelum.engine import Engine
from cerebelum.entrypoints.cli.common import (
    DbOption,
    DebugOption,
    HandlersOption,
    JsonOption,
    fail,
    guard,
    open_engine,
    print_json,
    settings_of,
)
from cerebelum.entrypoints.cli.executions import executions_app  # `executions upgrade` joins list and purge


def code_version_line(execution: Execution) -> str:
    """`status`: which code version runs it, and whether it waits for one."""
    version = execution.code_version or "(none yet: no process ran it)"
    line = f"{'code_version':>13}: {version} ({execution.versioning})"
    if execution.waiting_for_code_version:
        line += f"\n{'waiting':>13}: for code version {execution.waiting_for_code_version} (pinned: only its workers continue it)"
    return line


@executions_app.command("upgrade")
def executions_upgrade(
    ctx: typer.Context,
    execution_id: Annotated[str | None, typer.Argument(help="An execution id (exec-...).")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="Every execution of this workflow ...")] = None,
    from_version: Annotated[str | None, typer.Option("--from-version", help="... not ended, on this code version.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Move executions to this process's code version (--code-version, or the hash of --handlers),
    recording code_version_changed; a pinned one is then claimed by workers of that version."""
    settings = settings_of(ctx, db, handlers, debug)
    many = workflow is not None or from_version is not None
    if execution_id is not None and many:
        fail("error: give EXECUTION_ID, or --workflow and --from-version, not both")
    if execution_id is None and (workflow is None or from_version is None):
        missing = "--from-version" if workflow is not None else "--workflow" if from_version is not None else "EXECUTION_ID"
        fail(f"error: {missing}: required (EXECUTION_ID, or --workflow W --from-version V)")
    with guard(settings), open_engine(settings) as engine:
        target = engine.host.code_version()
        assert target is not None
        moved = asyncio.run(_upgrade(engine, execution_id, workflow, from_version, target))
    if json_output:
        print_json(moved[0].to_json() if execution_id is not None else {"items": [x.to_json() for x in moved]})
        return
    for execution in moved:
        now = execution.code_version or "(none yet: the first process that runs it fixes it)"
        print(f"{execution.id} code version {now}")
    if execution_id is None:
        print(f"{len(moved)} execution(s) of {workflow} moved from code version {from_version} to {target}")


async def _upgrade(engine: Engine, execution_id: str | None, workflow: Any, from_version: Any, target: str) -> list[Execution]:
    try:
        if execution_id is not None:
            return [await upgrade_execution(engine.host, execution_id, target)]
        return await upgrade_executions(engine.host, workflow, from_version, target)
    finally:
        await engine.close_async()  # the heartbeat this loop started

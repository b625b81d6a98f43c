"""`cerebelum run` in this process: Ctrl-C hands the execution back to the workers."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, NoReturn

import typer

from cerebelum.domain.execution import Execution
from cerebelum.engine import Engine
from cerebelum.entrypoints.cli.common import Settings, err, print_json
from cerebelum.entrypoints.cli.progress import Progress


async def run_here(
    engine: Engine, document: Any, value: Any, options: dict[str, Any], progress: Progress
) -> tuple[Execution, bool]:
    """Create and run the execution in this loop; Ctrl-C hands it back to the
    workers at once (its lease released) and a second Ctrl-C exits at once."""
    loop = asyncio.get_running_loop()
    interrupted = False
    running: asyncio.Task[Execution] | None = None

    def on_interrupt() -> None:
        nonlocal interrupted
        if interrupted:
            os._exit(130)
        interrupted = True
        err("interrupted: handing the execution back (Ctrl-C again to quit at once)")
        if running is not None:
            running.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        stored = await engine.create_workflow_async(document)  # ValidationError with every problem
        progress.title = f"{stored.name} v{stored.version}"
        execution, run = await engine.start_here_async(stored, value, **options)
        running = asyncio.ensure_future(run)
        if interrupted:  # before it started: let it take over its lease, then hand it back
            await asyncio.sleep(0)
            running.cancel()
        try:
            return await running, False
        except asyncio.CancelledError:
            if not interrupted:
                raise
            return await engine.status_async(execution.id), True
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await engine.close_async()


def interrupted_exit(settings: Settings, execution: Execution, json_output: bool) -> NoReturn:
    """After Ctrl-C on `run`: the execution's id and how to follow or cancel it; exit 130."""
    db = f" --db {settings.db}" if settings.db else ""
    if json_output:
        print_json(execution.to_json())
    else:
        print(f"{execution.id} {execution.status}")
    err(f"interrupted: execution {execution.id} is {execution.status}, handed back to the workers")
    handlers = "".join(f" --handlers {spec}" for spec in settings.handlers)
    err(f"  continue it: cerebelum{db} worker{handlers}")
    err(f"  follow it:   cerebelum{db} events {execution.id} --follow")
    err(f"  cancel it:   cerebelum{db} cancel {execution.id}")
    raise typer.Exit(130)

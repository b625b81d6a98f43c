"""`cerebelum signal` and `cerebelum fork`: talking to executions (interaction.md sections 1 and 8)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cerebelum.domain.execution import Execution
from cerebelum.entrypoints.cli.common import DbOption, DebugOption, JsonOption, guard, open_engine, print_json, settings_of
from cerebelum.infrastructure.documents import parse_json_argument

ExecutionArgument = Annotated[str, typer.Argument(help="An execution id (exec-...).")]


def signal(
    ctx: typer.Context,
    execution_id: ExecutionArgument,
    name: Annotated[str, typer.Argument(help="The signal's name (what a `wait` node waits for).")],
    payload: Annotated[str | None, typer.Option("--payload", help="The signal's payload: JSON text or @file.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key: a second signal with it is not appended.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Deliver a signal to an execution; prints the sequence of its event (exit 2: unknown or ended execution)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings):
        value = parse_json_argument(payload, "--payload") if payload is not None else None
        with open_engine(settings, load_handlers=False) as engine:
            sequence = engine.signal(execution_id, name, value, key)
    if json_output:
        print_json({"execution_id": execution_id, "signal": name, "sequence": sequence})
    else:
        print(f"{execution_id} {name} {sequence}")


def fork(
    ctx: typer.Context,
    execution_id: ExecutionArgument,
    at: Annotated[int | None, typer.Option("--at", help="Keep the log up to event N (default: before the failure).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Start a new execution from the log of this one (by default, from just before its failure)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        execution = engine.fork(execution_id, at)
    if json_output:
        print_json(execution.to_json())
    else:
        print(f"{execution.id} forked from {execution_id} at {execution.forked_at}")


def family(child: Execution) -> dict[str, Any]:
    """A child as `status --json` lists it."""
    return {"execution_id": child.id, "node": child.parent_node, "workflow": child.workflow, "status": child.status}


def family_lines(execution: Execution, children: list[Execution]) -> None:
    """`status`: the parent that started it and the children it started."""
    if execution.parent_id:
        print(f"{'parent':>13}: {execution.parent_id} (node {execution.parent_node})")
    for child in sorted(children, key=lambda c: c.parent_node or ""):
        print(f"{'child':>13}: {child.id} (node {child.parent_node}, {child.workflow}, {child.status})")


def register(app: typer.Typer) -> None:
    app.command()(signal)
    app.command()(fork)

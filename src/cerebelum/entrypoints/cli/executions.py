"""The `executions` command group: list executions for scripts, purge old ones (retention)."""

from __future__ import annotations

from typing import Annotated

import typer

from cerebelum.application.retention import BATCH_SIZE, parse_duration, purge_executions, terminal_statuses
from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.domain.execution import ExecutionStatus
from cerebelum.entrypoints.cli.common import DbOption, DebugOption, JsonOption, guard, open_engine, print_json, settings_of

executions_app = typer.Typer(help="Executions: list them, purge old ones, move them to this code version.", no_args_is_help=True)

StatusOption = Annotated[
    list[str] | None,
    typer.Option("--status", help="Only these statuses: repeatable or comma separated (completed,failed)."),
]
WorkflowOption = Annotated[str | None, typer.Option("--workflow", help="Only this workflow's executions.")]


def _statuses(given: list[str] | None, allowed: tuple[str, ...] | frozenset[str]) -> set[str] | None:
    """`--status a,b --status c` -> {a, b, c}; an unknown status is a located error."""
    if not given:
        return None
    statuses = {part.strip() for item in given for part in item.split(",") if part.strip()}
    unknown = sorted(statuses - set(allowed))
    if unknown or not statuses:
        named = ", ".join(unknown) or "(empty)"
        raise ValidationError([Problem("--status", f"unknown status {named}: one of {', '.join(allowed)}")])
    return statuses


@executions_app.command("list")
def executions_list(
    ctx: typer.Context,
    status: StatusOption = None,
    workflow: WorkflowOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first (paging).")] = 0,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Executions, newest first (the HTTP list's filters); --json: one object {"items": [...]}."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        items = engine.executions(workflow, _statuses(status, ExecutionStatus.ALL), limit, offset)
    if json_output:
        print_json({"items": [execution.to_json() for execution in items]})
        return
    for execution in items:
        row = execution.to_json()
        ended = row["completed_at"] or "-"
        print(f"{execution.id}  {execution.status:<9} {execution.workflow} v{execution.version}  {row['created_at']}  {ended}")


@executions_app.command("purge")
def executions_purge(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete executions that ended longer ago than this: 30d, 12h, 90m, 45s, 1d12h.")
    ],
    status: StatusOption = None,
    workflow: WorkflowOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000, help="Executions per transaction.")] = BATCH_SIZE,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete finished executions that ended longer ago than --older-than; print the count.

    With their events, in short batches; never one that has not finished."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings):
        age = parse_duration(older_than, "--older-than")
        statuses = terminal_statuses(_statuses(status, ExecutionStatus.ALL), "--status")
        with open_engine(settings, load_handlers=False) as engine:
            result = purge_executions(
                engine.store.executions, engine.clock, age, statuses, workflow, dry_run=dry_run, batch_size=batch_size
            )
    if json_output:
        print_json(result.to_json())
        return
    ended = result.to_json()["ended_before"]
    if dry_run:
        print(f"would purge {result.count} execution(s) that ended before {ended}")
    else:
        took = f"{result.batches} batch(es), {result.seconds:.1f} s"
        print(f"purged {result.count} execution(s) that ended before {ended} ({took})")

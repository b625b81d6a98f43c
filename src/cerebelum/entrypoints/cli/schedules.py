"""The `schedules` command group (interaction.md section 6): executions started on a clock.

Schedules are stored in the database and fire wherever workers run
(`cerebelum worker`, `cerebelum serve`); these commands only change them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from cerebelum.application import schedules as use
from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.entrypoints.cli.common import DbOption, DebugOption, JsonOption, guard, open_engine, print_json, settings_of
from cerebelum.infrastructure.documents import parse_json_argument

schedules_app = typer.Typer(help="Schedules: executions of a workflow started on a clock.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="The schedule's name.")]
FLAGS = {"every_s": "--every", "cron": "--cron", "timezone": "--timezone", "workflow": "--workflow", "version": "--version",
         "input": "--input", "overlap": "--overlap", "catchup": "--catchup", "name": "NAME"}  # fmt: skip


class Overlap(StrEnum):
    skip = "skip"
    allow = "allow"


class Catchup(StrEnum):
    latest = "latest"
    all = "all"
    none = "none"


def _flagged(exc: ValidationError) -> ValidationError:
    """Problems located by the command's own options (`--cron: ...`)."""
    return ValidationError([Problem(FLAGS.get(p.location, p.location), p.message) for p in exc.problems])


@schedules_app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    workflow: Annotated[str, typer.Option("--workflow", help="The stored workflow to start.")],
    cron: Annotated[str | None, typer.Option("--cron", help="A 5-field cron expression, e.g. '0 3 * * *'.")] = None,
    every: Annotated[float | None, typer.Option("--every", help="Every S seconds (a whole number >= 1).")] = None,
    input: Annotated[str | None, typer.Option("--input", help="Each execution's input: JSON text or @file.")] = None,
    version: Annotated[int | None, typer.Option("--version", help="A stored version (default: the latest at each tick).")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the cron expression.")] = "UTC",
    overlap: Annotated[Overlap, typer.Option("--overlap", help="skip: no tick while the previous run is on.")] = Overlap.skip,
    catchup: Annotated[Catchup, typer.Option("--catchup", help="Ticks missed while no worker ran.")] = Catchup.latest,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Create a schedule (exit 2 naming the option for a bad cron, time zone or unknown workflow)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings):
        document: dict[str, Any] = {
            "name": name,
            "workflow": workflow,
            "input": parse_json_argument(input, "--input") if input is not None else {},
            "timezone": timezone,
            "overlap": overlap.value,
            "catchup": catchup.value,
        }
        if cron is not None:
            document["cron"] = cron
        if every is not None:
            document["every_s"] = int(every) if every.is_integer() else every
        if version is not None:
            document["version"] = version
        with open_engine(settings, load_handlers=False) as engine:
            try:
                schedule = use.create_schedule(document, engine.host.schedule_ports())
            except ValidationError as exc:
                raise _flagged(exc) from None
    if json_output:
        print_json(schedule.to_json())
    else:
        print(f"created schedule {schedule.name}: next fire {schedule.to_json()['next_fire']}")


def _when(item: dict[str, Any]) -> str:
    return f"cron '{item['cron']}' {item['timezone']}" if item["cron"] else f"every {item['every_s']}s"


@schedules_app.command("list")
def list_schedules(ctx: typer.Context, json_output: JsonOption = False, db: DbOption = None, debug: DebugOption = False) -> None:
    """Every schedule with its next fire time."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        items = use.list_schedules(engine.host.schedule_ports())
    if json_output:
        print_json({"items": items})
        return
    for item in items:
        nxt = item["next_fires"][0] if item["next_fires"] else "-"
        print(f"{item['name']:<30} {item['state']:<7} {item['workflow']:<30} {_when(item):<32} next {nxt}")


@schedules_app.command("show")
def show(ctx: typer.Context, name: NameArgument, json_output: JsonOption = False, db: DbOption = None,
         debug: DebugOption = False) -> None:  # fmt: skip
    """A schedule, its next fire times and its recent ticks (started, skipped and why, missed)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        item = use.describe_schedule(name, engine.host.schedule_ports())
    if json_output:
        print_json(item)
        return
    for key in ("name", "state", "workflow", "version", "timezone", "overlap", "catchup", "last_tick"):
        print(f"{key:>10}: {item[key] if item[key] is not None else '-'}")
    print(f"{'when':>10}: {_when(item)}")
    print(f"{'input':>10}: {json.dumps(item['input'], ensure_ascii=False)}")
    print(f"{'next':>10}: {', '.join(item['next_fires']) or '- (paused)'}")
    print("recent ticks:" if item["recent"] else "recent ticks: none yet")
    for tick in item["recent"]:
        what = f"{tick['execution_id']} {tick['status'] or ''}".strip() if tick["execution_id"] else tick["reason"] or ""
        print(f"  {tick['tick']}  {tick['outcome']:<9} {what}")


def _act(ctx: typer.Context, name: str, action: str, db: str | None, debug: bool) -> Any:
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        return getattr(use, f"{action}_schedule")(name, engine.host.schedule_ports())


@schedules_app.command("pause")
def pause(ctx: typer.Context, name: NameArgument, db: DbOption = None, debug: DebugOption = False) -> None:
    """Stop firing the schedule's ticks (trigger still works)."""
    _act(ctx, name, "pause", db, debug)
    print(f"{name} paused")


@schedules_app.command("resume")
def resume(ctx: typer.Context, name: NameArgument, db: DbOption = None, debug: DebugOption = False) -> None:
    """Fire again from the next tick on (the ticks of the pause are not caught up)."""
    schedule = _act(ctx, name, "resume", db, debug)
    print(f"{name} active: next fire {schedule.to_json()['next_fire']}")


@schedules_app.command("delete")
def delete(ctx: typer.Context, name: NameArgument, db: DbOption = None, debug: DebugOption = False) -> None:
    """Delete the schedule and its history (the executions it started stay)."""
    _act(ctx, name, "delete", db, debug)
    print(f"deleted schedule {name}")


@schedules_app.command("trigger")
def trigger(ctx: typer.Context, name: NameArgument, json_output: JsonOption = False, db: DbOption = None,
            debug: DebugOption = False) -> None:  # fmt: skip
    """Start one execution of the schedule now (whatever its state and overlap); print its id."""
    execution = _act(ctx, name, "trigger", db, debug)
    if json_output:
        print_json(execution.to_json())
    else:
        print(execution.id)

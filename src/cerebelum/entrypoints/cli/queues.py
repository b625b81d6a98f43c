"""The `queues` command group, and the queue options of `start`, `run` and `worker` (spec section 9)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cerebelum.application.queues import QueueView, delete_queue, list_queues, set_queue, show_queue
from cerebelum.domain.queues import MAX_LIMIT, PRIORITY_MAX, PRIORITY_MIN, RATE_RULE
from cerebelum.entrypoints.cli.common import DbOption, DebugOption, JsonOption, guard, open_engine, print_json, settings_of

queues_app = typer.Typer(help="Queues and their limits (flow control).", no_args_is_help=True)

QueueOption = Annotated[
    str | None,
    typer.Option("--queue", help="The queue it waits on (default: the definition's `queue`, else 'default')."),
]
PriorityOption = Annotated[
    int | None,
    typer.Option(
        "--priority", min=PRIORITY_MIN, max=PRIORITY_MAX, help="1 (first) to 1000 (last); default 500. Then oldest first."
    ),
]
ConcurrencyKeyOption = Annotated[
    str | None,
    typer.Option("--concurrency-key", help="Its key for the queue's per-key concurrency (a customer, a tenant)."),
]
WorkerQueuesOption = Annotated[
    list[str] | None, typer.Option("--queue", help="Serve only this queue (repeatable; default: every queue).")
]


def queue_options(queue: str | None, priority: int | None, concurrency_key: str | None) -> dict[str, Any]:
    """The options of `Engine.execute/run` the flags gave (the others keep their defaults)."""
    given = {"queue": queue, "priority": priority, "concurrency_key": concurrency_key}
    return {name: value for name, value in given.items() if value is not None}


def _print(view: QueueView) -> None:
    data = view.to_json()
    for key in ("name", "concurrency", "per_key_concurrency", "rate", "waiting", "running", "oldest_waiting"):
        value = data[key]
        print(f"{key:>19}: {'unlimited' if value is None and key in ('concurrency', 'per_key_concurrency', 'rate') else value}")


@queues_app.command("set")
def queues_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name (1-100 characters of [A-Za-z0-9_.:-]).")],
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=MAX_LIMIT, help="At most N executions started and not ended."),
    ] = None,
    per_key_concurrency: Annotated[
        int | None,
        typer.Option("--per-key-concurrency", min=1, max=MAX_LIMIT, help="At most N per concurrency key."),
    ] = None,
    rate: Annotated[str | None, typer.Option("--rate", help=f"At most N starts per period: {RATE_RULE}.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Create or replace a queue's limits (a limit not given is unlimited); the next claim obeys them."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        view = set_queue(engine.store, name, concurrency, per_key_concurrency, rate)
    if json_output:
        print_json(view.to_json())
    else:
        _print(view)


@queues_app.command("list")
def queues_list(ctx: typer.Context, json_output: JsonOption = False, db: DbOption = None, debug: DebugOption = False) -> None:
    """Every queue with settings or with executions not ended: limits, waiting, running."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        views = list_queues(engine.store)
    if json_output:
        print_json({"items": [view.to_json() for view in views]})
        return
    print(f"{'NAME':<24} {'CONCURRENCY':>11} {'PER KEY':>8} {'RATE':>9} {'WAITING':>8} {'RUNNING':>8}  OLDEST WAITING")
    for view in views:
        d = view.to_json()
        limits = [str(d[k]) if d[k] is not None else "-" for k in ("concurrency", "per_key_concurrency", "rate")]
        print(f"{d['name']:<24} {limits[0]:>11} {limits[1]:>8} {limits[2]:>9} {d['waiting']:>8} {d['running']:>8}  "
              f"{d['oldest_waiting'] or '-'}")  # fmt: skip


@queues_app.command("show")
def queues_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.")],
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """One queue: its limits, executions waiting and running, the oldest waiting (exit 2 if unknown)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        view = show_queue(engine.store, name)
    if json_output:
        print_json(view.to_json())
    else:
        _print(view)


@queues_app.command("delete")
def queues_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.")],
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Forget a queue's limits: its executions are unlimited from the next claim on (exit 2 if it has none)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        delete_queue(engine.store, name)
    print(f"deleted the settings of queue {name}")

"""The `workflows` and `db` command groups."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cerebelum.entrypoints.cli.common import (
    DbOption,
    DebugOption,
    JsonOption,
    guard,
    open_engine,
    print_json,
    settings_of,
    warn_if_memory,
)

workflows_app = typer.Typer(help="Stored workflow definitions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@workflows_app.command("list")
def workflows_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this workflow's versions.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Stored workflows, newest first."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        items = engine.workflows(name, limit=1000)
    if json_output:
        print_json({"items": [w.to_json() for w in items]})
        return
    for stored in items:
        print(f"{stored.name:<40} v{stored.version:<5} {stored.to_json()['created_at']}")


@workflows_app.command("show")
def workflows_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    version: Annotated[int | None, typer.Option("--version", help="A version (default: latest).")] = None,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Print a stored definition (JSON)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        stored = engine.get_workflow(name, version)
    print(json.dumps(stored.to_json(), indent=2, ensure_ascii=False))


@workflows_app.command("delete")
def workflows_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    version: Annotated[int, typer.Option("--version", min=1, help="The version to delete (required).")],
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Soft-delete one version: hidden from lists and new executions, kept for the executions
    that reference it; refused (exit 2) while any of them is not finished."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        engine.delete_workflow(name, version)
    print(f"deleted {name} v{version}")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, db: DbOption = None, debug: DebugOption = False) -> None:
    """Apply the schema migrations (also done automatically on first use)."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings):
        from cerebelum.bootstrap import database_url, upgrade_database

        url = database_url(settings.db)
        warn_if_memory(url, "db upgrade", "the schema is gone")
        revision = upgrade_database(url)
    print(f"database at revision {revision}")

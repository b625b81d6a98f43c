"""`export`, `import` and `replay`: histories that travel between databases and into CI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from cerebelum.application.handlers import default_registry
from cerebelum.application.histories import bundle_from_text, export_history, import_history, replay_history
from cerebelum.application.replay_execution import ReplayReport
from cerebelum.bootstrap import code_version_of, offline_adapters
from cerebelum.domain.history import HistoryBundle
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
from cerebelum.infrastructure.documents import DocumentError, import_handlers

BundleFile = Annotated[Path, typer.Argument(help="A history bundle written by `cerebelum export`.")]


def read_bundle_file(path: Path) -> HistoryBundle:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return bundle_from_text(text, str(path))


def export(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the bundle here (default: stdout).")] = None,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Write an execution as a self-contained JSON bundle (definition, row, events).

    For `import` into another database or `replay --file` in CI."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        bundle = export_history(engine.store, execution_id)
        document = bundle.to_json(engine.clock.now(), engine.host.settings.engine_version)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"error: --output {output}: cannot write: {exc.strerror or exc}")
    print(f"exported {execution_id} ({bundle.workflow.name} v{bundle.workflow.version}, {len(bundle.events)} events) to {output}")


def import_(
    ctx: typer.Context,
    file: BundleFile,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Load a bundle written by `export` into this database.

    Its workflow version too, if absent. Refused (exit 2, nothing written) if the
    execution id exists, the execution has not finished or the bundle is invalid."""
    settings = settings_of(ctx, db, None, debug)
    with guard(settings, str(file)):
        bundle = read_bundle_file(file)
        with open_engine(settings, load_handlers=False) as engine:
            execution = import_history(engine.store, engine.ids, engine.compiler, bundle)
    if json_output:
        print_json(execution.to_json())
        return
    print(f"imported {execution.id} ({execution.workflow} v{execution.version}, {execution.status}, {len(bundle.events)} events)")


def replay(
    ctx: typer.Context,
    execution_id: Annotated[str | None, typer.Argument(help="An execution id (exec-...); or give --file.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Replay this bundle, with no database.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Also re-invoke handlers and compare outputs.")] = False,
    from_start: Annotated[bool, typer.Option("--from-start", help="Ignore checkpoints; replay the whole log.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Replay an execution's log (or a bundle: --file); exit 0 identical, 1 divergent.

    With --file no database is used. Exit 2 on bad input."""
    settings = settings_of(ctx, db, handlers, debug)
    if (execution_id is None) == (file is None):
        fail("error: give an execution id or --file BUNDLE (one of them)")
    with guard(settings, str(file) if file is not None else ""):
        if file is not None:
            bundle = read_bundle_file(file)
            for spec in settings.handlers if strict else ():
                import_handlers(spec)
            compiler, clock, scope = offline_adapters()
            report = asyncio.run(
                replay_history(bundle, compiler, strict=strict, handlers=default_registry, clock=clock, step_scope=scope)
            )
            mine = code_version_of(default_registry, settings.code_version).current() if strict else None
        else:
            assert execution_id is not None
            with open_engine(settings, load_handlers=strict) as engine:
                report = engine.replay(execution_id, strict=strict, from_start=from_start)
                mine = engine.host.code_version() if strict else None
    show_report(report, json_output, execution_id or report.execution_id, mine)


def show_report(report: ReplayReport, json_output: bool, name: str, replayed_with: str | None = None) -> None:
    """`replayed_with`: the code version strict replay re-ran the handlers with."""
    if json_output:
        print_json(report.to_json())
    elif report.identical:
        print(f"{name}: identical ({report.checked} events from sequence {report.from_sequence})")
    else:
        d = report.divergence
        assert d is not None
        by = f", recorded by code version {d.code_version}" if d.code_version else ""
        print(f"{name}: diverges at sequence {d.sequence} (node {d.node_id or '-'}{by}): {d.reason}")
        if replayed_with:
            print(f"  replayed with code version {replayed_with}")
        print(f"  log:    {json.dumps(d.recorded, ensure_ascii=False)}")
        print(f"  replay: {json.dumps(d.replayed, ensure_ascii=False)}")
    raise typer.Exit(0 if report.identical else 1)

"""`cerebelum` command line: each command parses, calls the Engine, prints.

Exit codes follow docs/cli.md: 0 success, 1 a failed execution (or an
unreachable database), 2 bad input (invalid definition, unknown id, bad JSON).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.live import Live

from cerebelum.application.definitions import Definitions
from cerebelum.application.execute_workflow import InvalidInput
from cerebelum.application.handlers import default_registry
from cerebelum.application.mermaid import to_mermaid
from cerebelum.bootstrap import expression_compiler
from cerebelum.domain.errors import CerebelumError, StoreUnavailable, ValidationError
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.engine import Engine
from cerebelum.entrypoints.cli.progress import Progress, stderr_console
from cerebelum.infrastructure.documents import import_handlers, load_document, parse_json_argument
from cerebelum.infrastructure.redaction import mask_url, scrub
from cerebelum.infrastructure.tracing import trace_from_environment

app = typer.Typer(
    name="cerebelum",
    help="Durable, event-sourced workflows on SQLite or PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
workflows_app = typer.Typer(help="Stored workflow definitions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(db_app, name="db")

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: $CEREBELUM_DB or sqlite:///cerebelum.db).")]
HandlersOption = Annotated[
    list[str] | None,
    typer.Option("--handlers", help="Handler module (dotted name) or .py file; repeatable. Default: $CEREBELUM_HANDLERS."),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Idempotency key (1-200 chars): a second start with it returns the first execution."),
]


@dataclass
class Settings:
    db: str | None = None
    handlers: list[str] = field(default_factory=list)
    debug: bool = False


@app.callback()
def _global(ctx: typer.Context, db: DbOption = None, handlers: HandlersOption = None, debug: DebugOption = False) -> None:
    ctx.obj = Settings(db, list(handlers or []), debug)


def _settings(ctx: typer.Context, db: str | None, handlers: list[str] | None, debug: bool) -> Settings:
    """Options given before the subcommand, then after it: handlers add up, the later --db wins."""
    root = ctx.find_root().obj or Settings()
    merged = Settings(db or root.db, [*root.handlers, *(handlers or [])], debug or root.debug)
    if not merged.handlers and os.environ.get("CEREBELUM_HANDLERS"):
        raw = os.environ["CEREBELUM_HANDLERS"].replace(os.pathsep, ",")
        merged.handlers = [item.strip() for item in raw.split(",") if item.strip()]
    return merged


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _fail(message: str, code: int = 2) -> NoReturn:
    _err(message)
    raise typer.Exit(code)


@contextmanager
def _guard(settings: Settings, origin: str = "") -> Iterator[None]:
    """Turn the project's errors into one readable line and an exit code."""
    prefix = f"{origin}: " if origin else ""
    try:
        yield
    except typer.Exit:
        raise
    except ValidationError as exc:
        if settings.debug:
            traceback.print_exc()
        for problem in exc.problems:
            _err(f"{prefix}{problem}")
        raise typer.Exit(2) from None
    except StoreUnavailable as exc:
        if settings.debug:
            traceback.print_exc()
        _fail(f"error: {scrub(str(exc))}", 1)  # a database URL's password never reaches the terminal
    except (CerebelumError, InvalidInput) as exc:
        if settings.debug:
            traceback.print_exc()
        _fail(f"error: {scrub(str(exc))}", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if settings.debug:
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {scrub(str(exc))} (run with --debug for the traceback)", 1)


def _engine(settings: Settings, load_handlers: bool = True) -> Engine:
    if load_handlers:
        for spec in settings.handlers:
            import_handlers(spec)
    return Engine(settings.db, workers=0)


def _definitions() -> Definitions:
    """Checking and compiling without a database (validate, graph)."""
    return Definitions(expression_compiler(), default_registry)


_FRAME = re.compile(r'^  File "(.+)", line (\d+), in ', re.MULTILINE)


def _last_frame(error: dict[str, Any] | None) -> str | None:
    """`file:line` of the innermost frame of an error's traceback (the user's code)."""
    trace = (error or {}).get("traceback")
    frames = _FRAME.findall(trace) if isinstance(trace, str) else []
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else None


def _warn_if_memory(url: str, command: str, lost: str) -> None:
    """`memory://` lives as long as this process: say so where the work outlives it."""
    if url.startswith("memory:"):
        _err(f"warning: --db {url} keeps everything in this process only: {lost} when '{command}' exits; "
             "use sqlite:///file.db or postgresql://... to keep it")


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@app.command()
def validate(
    ctx: typer.Context,
    definition: Annotated[Path, typer.Argument(help="A JSON or YAML definition file.")],
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Validate a definition; print every problem with its location."""
    settings = _settings(ctx, db, handlers, debug)
    with _guard(settings, str(definition)):
        for spec in settings.handlers:
            import_handlers(spec)
        problems = _definitions().validate(load_document(definition))
        if problems:
            raise ValidationError(problems)
        print(f"{definition}: valid")


@app.command()
def run(
    ctx: typer.Context,
    definition: Annotated[Path, typer.Argument(help="A JSON or YAML definition file.")],
    input: Annotated[str | None, typer.Option("--input", help="Execution input: JSON text or @file.")] = None,
    virtual_time: Annotated[bool, typer.Option("--virtual-time", help="Delays and sleeps advance a virtual clock.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the execution's randomness.")] = None,
    key: KeyOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Create or reuse the workflow and run one execution to its end here."""
    settings = _settings(ctx, db, handlers, debug)
    with _guard(settings, str(definition)):
        document = load_document(definition)
        value = parse_json_argument(input, "--input") if input is not None else {}
        with _engine(settings) as engine:
            progress = Progress(str(definition))
            live = sys.stderr.isatty()
            unsubscribe = engine.subscribe(progress.on_event) if live else None
            with Live(progress, console=stderr_console(), refresh_per_second=8) if live else nullcontext():
                options = {"seed": seed, "virtual_time": virtual_time, "key": key}
                execution, interrupted = asyncio.run(_run_here(engine, document, value, options, progress))
            if unsubscribe:
                unsubscribe()
    if interrupted:
        _interrupted(settings, execution, json_output)
    if json_output:
        _print_json(execution.to_json())
    else:
        print(f"{execution.id} {execution.status}")
        if execution.status == "completed":
            print(json.dumps(execution.output, indent=2, ensure_ascii=False))
        elif execution.error:
            frame = _last_frame(execution.error)
            where = f" at {frame}" if frame else ""
            _err(f"error: {execution.error.get('message')} (node {execution.error.get('node')}){where}")
    raise typer.Exit(0 if execution.status == "completed" else 1)


async def _run_here(
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
        _err("interrupted: handing the execution back (Ctrl-C again to quit at once)")
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


def _interrupted(settings: Settings, execution: Execution, json_output: bool) -> NoReturn:
    """After Ctrl-C on `run`: the execution's id and how to follow or cancel it; exit 130."""
    db = f" --db {settings.db}" if settings.db else ""
    if json_output:
        _print_json(execution.to_json())
    else:
        print(f"{execution.id} {execution.status}")
    _err(f"interrupted: execution {execution.id} is {execution.status}, handed back to the workers")
    handlers = "".join(f" --handlers {spec}" for spec in settings.handlers)
    _err(f"  continue it: cerebelum{db} worker{handlers}")
    _err(f"  follow it:   cerebelum{db} events {execution.id} --follow")
    _err(f"  cancel it:   cerebelum{db} cancel {execution.id}")
    raise typer.Exit(130)


@app.command()
def start(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="A stored workflow's name, or a JSON/YAML definition file.")],
    input: Annotated[str | None, typer.Option("--input", help="Execution input: JSON text or @file.")] = None,
    version: Annotated[int | None, typer.Option("--version", help="A stored version (default: latest).")] = None,
    virtual_time: Annotated[bool, typer.Option("--virtual-time", help="Delays and sleeps advance a virtual clock.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the execution's randomness.")] = None,
    key: KeyOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Enqueue an execution for the workers and print its id (with --key: at most once per key)."""
    settings = _settings(ctx, db, handlers, debug)
    with _guard(settings, workflow):
        value = parse_json_argument(input, "--input") if input is not None else {}
        target: Any = workflow
        if Path(workflow).is_file():
            target = load_document(workflow)
        with _engine(settings) as engine:  # a definition is validated (every problem) and stored first
            execution = engine.execute(target, value, version=version, seed=seed, virtual_time=virtual_time, key=key)
            _warn_if_memory(engine.url, "start", f"execution {execution.id} is lost, never run,")
    if json_output:
        _print_json(execution.to_json())
    else:
        print(execution.id)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Executions run at once.")] = 8,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", min=0.5, help="Seconds a claim lasts without a heartbeat.")] = 30.0,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.01, help="Seconds between queue polls.")] = 0.5,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Run a supervised worker pool until SIGTERM/SIGINT (graceful: in-flight handlers finish)."""
    settings = _settings(ctx, db, handlers, debug)
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _guard(settings):
        for spec in settings.handlers:
            import_handlers(spec)
        engine = Engine(settings.db, workers=concurrency, lease_ttl=lease_ttl, poll_interval=poll_interval)
        untrace = trace_from_environment(engine)

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            _err(f"worker {engine.owner}: {concurrency} at a time on {mask_url(engine.url)}; handlers: {len(engine.handlers)}")
            await engine.work_async(concurrency, stop)
            _err(f"worker {engine.owner}: stopped")

        try:
            asyncio.run(serve())
        finally:
            engine.close()
            if untrace is not None:
                untrace()


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=0, help="In-process worker pool size (0: API only).")] = 4,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host the server answers to: NAME (any port), NAME:PORT or '*' (repeatable; the bound address, "
            "localhost, 127.0.0.1 and [::1] with the port always are). Other Hosts get 403.",
        ),
    ] = None,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Serve the HTTP API (and, unless --workers 0, a worker pool) until SIGTERM/SIGINT.

    Bearer tokens come from env CEREBELUM_API_TOKENS (comma separated) and/or
    CEREBELUM_API_TOKENS_FILE (one per line). Off loopback they are required."""
    settings = _settings(ctx, db, handlers, debug)
    with _guard(settings):
        from cerebelum.entrypoints.http.auth import TOKENS_ENV, TOKENS_FILE_ENV, TokenConfigError, load_tokens

        try:
            tokens = load_tokens()
        except TokenConfigError as exc:
            _fail(f"error: {exc}")
        loopback = _is_loopback(host)
        if not loopback and not tokens:
            _fail(f"error: refusing to listen on {host} without auth: set {TOKENS_ENV} or {TOKENS_FILE_ENV}")
        for spec in settings.handlers:
            import_handlers(spec)
        import uvicorn

        from cerebelum.entrypoints.http import create_app
        from cerebelum.entrypoints.http.origin import default_allowed_hosts

        hosts = [*default_allowed_hosts(host, port), *(allowed_host or [])]

        engine = Engine(settings.db, workers=workers)
        untrace = trace_from_environment(engine)
        # uvicorn re-raises the signal that stopped it once it has shut down; a
        # handler of ours in place makes that a no-op, so a graceful stop exits 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        try:
            auth = f"bearer auth, {len(tokens)} token(s)" if tokens else "no auth (loopback)"
            base = f"http://{host}:{port}"
            where = f"{base}/ (API: {base}/api/v1, OpenAPI: {base}/openapi.json)"
            _err(f"Cerebelum console on {where}, database {mask_url(engine.url)}, {auth}")
            application = create_app(
                engine, run_workers=True, tokens=tokens, require_auth=bool(tokens) or not loopback, allowed_hosts=hosts
            )
            uvicorn.run(application, host=host, port=port, log_level="debug" if debug else "warning")
        finally:
            engine.close()
            if untrace is not None:
                untrace()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _transition(ctx: typer.Context, execution_id: str, action: str, json_output: bool, db: str | None, debug: bool) -> None:
    settings = _settings(ctx, db, None, debug)
    with _guard(settings), _engine(settings, load_handlers=False) as engine:
        execution = getattr(engine, action)(execution_id)
    if json_output:
        _print_json(execution.to_json())
    else:
        requested = f" ({execution.control} requested)" if execution.control else ""
        print(f"{execution.id} {execution.status}{requested}")


@app.command()
def pause(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Pause an execution before its next node starts (exit 2 if it cannot be paused)."""
    _transition(ctx, execution_id, "pause", json_output, db, debug)


@app.command()
def resume(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Resume a paused execution where it stopped (exit 2 if it is not paused)."""
    _transition(ctx, execution_id, "resume", json_output, db, debug)


@app.command()
def cancel(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Cancel an execution at its next safe point (exit 2 if it already ended)."""
    _transition(ctx, execution_id, "cancel", json_output, db, debug)


@app.command()
def status(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    at: Annotated[int | None, typer.Option("--at", help="Time travel: the state after event N.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Current status, output or error of an execution (or its state at sequence N)."""
    settings = _settings(ctx, db, None, debug)
    with _guard(settings), _engine(settings, load_handlers=False) as engine:
        execution = engine.status(execution_id)
        if at is not None:
            if at < 0 or at > execution.last_sequence:
                _fail(f"error: --at {at}: the log of {execution_id} has sequences 0..{execution.last_sequence}")
            state = engine.state_at(execution_id, at)
    if at is not None:
        if json_output:
            _print_json(state)
        else:
            print(json.dumps(state, indent=2, ensure_ascii=False))
        return
    if json_output:
        _print_json(execution.to_json())
        return
    data = execution.to_json()
    for key in ("execution_id", "workflow", "version", "status", "started_at", "completed_at"):
        print(f"{key:>13}: {data[key]}")
    print(f"{'input':>13}: {json.dumps(execution.input)}")
    if execution.status == "completed":
        print(f"{'output':>13}: {json.dumps(execution.output)}")
    if execution.error:
        print(f"{'error':>13}: {execution.error.get('kind')}: {execution.error.get('message')}")
        node, attempt = execution.error.get("node"), execution.error.get("attempt")
        if node:
            print(f"{'node':>13}: {node}" + (f" (attempt {attempt})" if attempt else ""))
        frame = _last_frame(execution.error)
        if frame:
            print(f"{'at':>13}: {frame}")


@app.command()
def events(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    json_output: JsonOption = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing events until the execution ends.")] = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """The event log of an execution, in order (JSON lines with --json); --follow waits for more."""
    settings = _settings(ctx, db, None, debug)

    def show(event: Event) -> None:
        if json_output:
            _print_json(event.to_json())
        else:
            row = event.to_json()
            payload = json.dumps(event.payload, ensure_ascii=False)
            print(f"{row['sequence']:>5}  {row['timestamp']}  {event.type:<20} {event.node_id or '-':<20} {payload}")
        sys.stdout.flush()

    async def tail(engine: Engine) -> None:
        async for event in engine.follow_async(execution_id):
            show(event)

    with _guard(settings), _engine(settings, load_handlers=False) as engine:
        if follow:
            engine.status(execution_id)
            asyncio.run(tail(engine))
            return
        log = engine.events(execution_id)
    for event in log:
        show(event)


@app.command()
def replay(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-...).")],
    strict: Annotated[bool, typer.Option("--strict", help="Also re-invoke handlers and compare outputs.")] = False,
    from_start: Annotated[bool, typer.Option("--from-start", help="Ignore checkpoints; replay the whole log.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Replay an execution from its log; exit 0 if identical, 1 at the first divergence."""
    settings = _settings(ctx, db, handlers, debug)
    with _guard(settings), _engine(settings, load_handlers=strict) as engine:
        report = engine.replay(execution_id, strict=strict, from_start=from_start)
    if json_output:
        _print_json(report.to_json())
    elif report.identical:
        print(f"{execution_id}: identical ({report.checked} events from sequence {report.from_sequence})")
    else:
        d = report.divergence
        assert d is not None
        print(f"{execution_id}: diverges at sequence {d.sequence} (node {d.node_id or '-'}): {d.reason}")
        print(f"  log:    {json.dumps(d.recorded, ensure_ascii=False)}")
        print(f"  replay: {json.dumps(d.replayed, ensure_ascii=False)}")
    raise typer.Exit(0 if report.identical else 1)


@app.command()
def graph(
    ctx: typer.Context,
    definition: Annotated[Path, typer.Argument(help="A JSON or YAML definition file.")],
    debug: DebugOption = False,
) -> None:
    """Print the workflow as a Mermaid flowchart."""
    settings = _settings(ctx, None, None, debug)
    with _guard(settings, str(definition)):
        sys.stdout.write(to_mermaid(_definitions().read(load_document(definition))))


@workflows_app.command("list")
def workflows_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this workflow's versions.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    debug: DebugOption = False,
) -> None:
    """Stored workflows, newest first."""
    settings = _settings(ctx, db, None, debug)
    with _guard(settings), _engine(settings, load_handlers=False) as engine:
        items = engine.workflows(name, limit=1000)
    if json_output:
        _print_json({"items": [w.to_json() for w in items]})
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
    settings = _settings(ctx, db, None, debug)
    with _guard(settings), _engine(settings, load_handlers=False) as engine:
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
    settings = _settings(ctx, db, None, debug)
    with _guard(settings), _engine(settings, load_handlers=False) as engine:
        engine.delete_workflow(name, version)
    print(f"deleted {name} v{version}")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, db: DbOption = None, debug: DebugOption = False) -> None:
    """Apply the schema migrations (also done automatically on first use)."""
    settings = _settings(ctx, db, None, debug)
    with _guard(settings):
        from cerebelum.bootstrap import database_url, upgrade_database

        url = database_url(settings.db)
        _warn_if_memory(url, "db upgrade", "the schema is gone")
        revision = upgrade_database(url)
    print(f"database at revision {revision}")


def main() -> None:
    app()

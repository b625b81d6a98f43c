"""`cerebelum` command line: each command parses, calls the Engine, prints.

Exit codes follow docs/cli.md: 0 success, 1 a failed execution (or an
unreachable database), 2 bad input (invalid definition, unknown id, bad JSON).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from cerebelum.application.mermaid import to_mermaid
from cerebelum.application.retention import parse_duration
from cerebelum.domain.errors import ValidationError
from cerebelum.domain.events import Event
from cerebelum.engine import Engine
from cerebelum.entrypoints.cli import histories, interaction
from cerebelum.entrypoints.cli.codeversions import code_version_line
from cerebelum.entrypoints.cli.common import (
    CodeVersionOption,
    DbOption,
    DebugOption,
    HandlersOption,
    JsonOption,
    KeyOption,
    Settings,
    TimeoutOption,
    definitions,
    err,
    fail,
    guard,
    last_frame,
    open_engine,
    print_json,
    settings_of,
    warn_if_memory,
)
from cerebelum.entrypoints.cli.executions import executions_app
from cerebelum.entrypoints.cli.groups import db_app, workflows_app
from cerebelum.entrypoints.cli.interaction import family, family_lines
from cerebelum.entrypoints.cli.progress import Progress, stderr_console
from cerebelum.entrypoints.cli.queues import (
    ConcurrencyKeyOption,
    PriorityOption,
    QueueOption,
    WorkerQueuesOption,
    queue_options,
    queues_app,
)
from cerebelum.entrypoints.cli.running import interrupted_exit, run_here
from cerebelum.entrypoints.cli.schedules import schedules_app
from cerebelum.infrastructure.documents import import_handlers, load_document, parse_json_argument
from cerebelum.infrastructure.redaction import mask_url
from cerebelum.infrastructure.tracing import trace_from_environment

app = typer.Typer(
    name="cerebelum",
    help="Durable, event-sourced workflows on SQLite or PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(workflows_app, name="workflows")
app.add_typer(db_app, name="db")
app.add_typer(executions_app, name="executions")
app.add_typer(schedules_app, name="schedules")
interaction.register(app)  # signal, fork
app.add_typer(queues_app, name="queues")


@app.callback()
def _global(
    ctx: typer.Context,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
    code_version: CodeVersionOption = None,
) -> None:
    ctx.obj = Settings(db, list(handlers or []), debug, code_version)


@app.command()
def validate(
    ctx: typer.Context,
    definition: Annotated[Path, typer.Argument(help="A JSON or YAML definition file.")],
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Validate a definition; print every problem with its location."""
    settings = settings_of(ctx, db, handlers, debug)
    with guard(settings, str(definition)):
        for spec in settings.handlers:
            import_handlers(spec)
        problems = definitions().validate(load_document(definition))
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
    timeout: TimeoutOption = None,
    queue: QueueOption = None,
    priority: PriorityOption = None,
    concurrency_key: ConcurrencyKeyOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Create or reuse the workflow and run one execution to its end here (on a limited queue: once it has a slot)."""
    settings = settings_of(ctx, db, handlers, debug)
    with guard(settings, str(definition)):
        document = load_document(definition)
        value = parse_json_argument(input, "--input") if input is not None else {}
        with open_engine(settings) as engine:
            progress = Progress(str(definition))
            live = sys.stderr.isatty()
            unsubscribe = engine.subscribe(progress.on_event) if live else None
            with Live(progress, console=stderr_console(), refresh_per_second=8) if live else nullcontext():
                flow = queue_options(queue, priority, concurrency_key)
                options = {"seed": seed, "virtual_time": virtual_time, "key": key, "timeout_s": timeout, **flow}
                execution, interrupted = asyncio.run(run_here(engine, document, value, options, progress))
            if unsubscribe:
                unsubscribe()
    if interrupted:
        interrupted_exit(settings, execution, json_output)
    if json_output:
        print_json(execution.to_json())
    else:
        print(f"{execution.id} {execution.status}")
        if execution.status == "completed":
            print(json.dumps(execution.output, indent=2, ensure_ascii=False))
        elif execution.error:
            frame = last_frame(execution.error)
            where = f" at {frame}" if frame else ""
            err(f"error: {execution.error.get('message')} (node {execution.error.get('node')}){where}")
    raise typer.Exit(0 if execution.status == "completed" else 1)


@app.command()
def start(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="A stored workflow's name, or a JSON/YAML definition file.")],
    input: Annotated[str | None, typer.Option("--input", help="Execution input: JSON text or @file.")] = None,
    version: Annotated[int | None, typer.Option("--version", help="A stored version (default: latest).")] = None,
    virtual_time: Annotated[bool, typer.Option("--virtual-time", help="Delays and sleeps advance a virtual clock.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the execution's randomness.")] = None,
    key: KeyOption = None,
    timeout: TimeoutOption = None,
    queue: QueueOption = None,
    priority: PriorityOption = None,
    concurrency_key: ConcurrencyKeyOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Enqueue an execution for the workers and print its id (with --key: at most once per key)."""
    settings = settings_of(ctx, db, handlers, debug)
    with guard(settings, workflow):
        value = parse_json_argument(input, "--input") if input is not None else {}
        target: Any = workflow
        if Path(workflow).is_file():
            target = load_document(workflow)
        with open_engine(settings) as engine:  # a definition is validated (every problem) and stored first
            flow = queue_options(queue, priority, concurrency_key)
            execution = engine.execute(
                target, value, version=version, seed=seed, virtual_time=virtual_time, key=key, timeout_s=timeout, **flow
            )
            warn_if_memory(engine.url, "start", f"execution {execution.id} is lost, never run,")
    if json_output:
        print_json(execution.to_json())
    else:
        print(execution.id)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Executions run at once.")] = 8,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", min=0.5, help="Seconds a claim lasts without a heartbeat.")] = 30.0,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.01, help="Seconds between queue polls.")] = 0.5,
    retention: Annotated[str | None, typer.Option("--retention", help="Purge executions that ended longer ago (30d).")] = None,
    queue: WorkerQueuesOption = None,
    db: DbOption = None,
    handlers: HandlersOption = None,
    debug: DebugOption = False,
) -> None:
    """Run a supervised worker pool until SIGTERM/SIGINT (graceful: in-flight handlers finish)."""
    settings = settings_of(ctx, db, handlers, debug)
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with guard(settings):
        for spec in settings.handlers:
            import_handlers(spec)
        kept = parse_duration(retention, "--retention").total_seconds() if retention is not None else None
        engine = Engine(
            settings.db, workers=concurrency, lease_ttl=lease_ttl, poll_interval=poll_interval,
            code_version=settings.code_version, retention=kept, queues=queue,
        )  # fmt: skip
        untrace = trace_from_environment(engine)

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            served = f"queues {', '.join(sorted(set(queue)))}" if queue else "every queue"
            where = f"{concurrency} at a time on {mask_url(engine.url)}, {served}; handlers: {len(engine.handlers)}"
            kept = f"; code version {engine.host.code_version()}" + (f"; retention {retention}" if retention else "")
            err(f"worker {engine.owner}: {where}{kept}")
            await engine.work_async(concurrency, stop)
            err(f"worker {engine.owner}: stopped")

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
    settings = settings_of(ctx, db, handlers, debug)
    with guard(settings):
        from cerebelum.entrypoints.http.auth import TOKENS_ENV, TOKENS_FILE_ENV, TokenConfigError, load_tokens

        try:
            tokens = load_tokens()
        except TokenConfigError as exc:
            fail(f"error: {exc}")
        loopback = _is_loopback(host)
        if not loopback and not tokens:
            fail(f"error: refusing to listen on {host} without auth: set {TOKENS_ENV} or {TOKENS_FILE_ENV}")
        for spec in settings.handlers:
            import_handlers(spec)
        import uvicorn

        from cerebelum.entrypoints.http import create_app
        from cerebelum.entrypoints.http.origin import default_allowed_hosts

        hosts = [*default_allowed_hosts(host, port), *(allowed_host or [])]

        engine = Engine(settings.db, workers=workers, code_version=settings.code_version)
        untrace = trace_from_environment(engine)
        # uvicorn re-raises the signal that stopped it once it has shut down; a
        # handler of ours in place makes that a no-op, so a graceful stop exits 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        try:
            auth = f"bearer auth, {len(tokens)} token(s)" if tokens else "no auth (loopback)"
            base = f"http://{host}:{port}"
            where = f"{base}/ (API: {base}/api/v1, OpenAPI: {base}/openapi.json)"
            err(f"Cerebelum console on {where}, database {mask_url(engine.url)}, {auth}")
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
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        execution = getattr(engine, action)(execution_id)
    if json_output:
        print_json(execution.to_json())
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
    settings = settings_of(ctx, db, None, debug)
    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        execution = engine.status(execution_id)
        children = engine.executions(parent=execution_id, limit=1000)
        if at is not None:
            if at < 0 or at > execution.last_sequence:
                fail(f"error: --at {at}: the log of {execution_id} has sequences 0..{execution.last_sequence}")
            state = engine.state_at(execution_id, at)
    if at is not None:
        if json_output:
            print_json(state)
        else:
            print(json.dumps(state, indent=2, ensure_ascii=False))
        return
    if json_output:
        print_json({**execution.to_json(), "children": [family(child) for child in children]})
        return
    data = execution.to_json()
    for key in ("execution_id", "workflow", "version", "status", "queue", "priority", "started_at", "completed_at"):
        print(f"{key:>13}: {data[key]}")
    if execution.forked_from:
        print(f"{'forked_from':>13}: {execution.forked_from} at {execution.forked_at}")
    family_lines(execution, children)
    print(code_version_line(execution))
    print(f"{'input':>13}: {json.dumps(execution.input)}")
    if execution.status == "completed":
        print(f"{'output':>13}: {json.dumps(execution.output)}")
    if execution.error:
        print(f"{'error':>13}: {execution.error.get('kind')}: {execution.error.get('message')}")
        node, attempt = execution.error.get("node"), execution.error.get("attempt")
        if node:
            print(f"{'node':>13}: {node}" + (f" (attempt {attempt})" if attempt else ""))
        frame = last_frame(execution.error)
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
    settings = settings_of(ctx, db, None, debug)

    def show(event: Event) -> None:
        if json_output:
            print_json(event.to_json())
        else:
            row = event.to_json()
            payload = json.dumps(event.payload, ensure_ascii=False)
            print(f"{row['sequence']:>5}  {row['timestamp']}  {event.type:<20} {event.node_id or '-':<20} {payload}")
        sys.stdout.flush()

    async def tail(engine: Engine) -> None:
        async for event in engine.follow_async(execution_id):
            show(event)

    with guard(settings), open_engine(settings, load_handlers=False) as engine:
        if follow:
            engine.status(execution_id)
            asyncio.run(tail(engine))
            return
        log = engine.events(execution_id)
    for event in log:
        show(event)


@app.command()
def graph(
    ctx: typer.Context,
    definition: Annotated[Path, typer.Argument(help="A JSON or YAML definition file.")],
    debug: DebugOption = False,
) -> None:
    """Print the workflow as a Mermaid flowchart."""
    settings = settings_of(ctx, None, None, debug)
    with guard(settings, str(definition)):
        sys.stdout.write(to_mermaid(definitions().read(load_document(definition))))


app.command()(histories.replay)
app.command()(histories.export)
app.command("import")(histories.import_)


def main() -> None:
    app()

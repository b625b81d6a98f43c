"""What every `cerebelum` command shares: options, settings, error handling, output."""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import typer

from cerebelum.application.code_versions import CODE_VERSION_RE, CODE_VERSION_RULE
from cerebelum.application.definitions import Definitions
from cerebelum.application.execute_workflow import InvalidInput
from cerebelum.application.handlers import default_registry
from cerebelum.bootstrap import expression_compiler
from cerebelum.domain.errors import CerebelumError, StoreUnavailable, ValidationError
from cerebelum.engine import Engine
from cerebelum.infrastructure.documents import import_handlers
from cerebelum.infrastructure.redaction import scrub

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: $CEREBELUM_DB or sqlite:///cerebelum.db).")]
HandlersOption = Annotated[
    list[str] | None,
    typer.Option("--handlers", help="Handler module (dotted name) or .py file; repeatable. Default: $CEREBELUM_HANDLERS."),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", min=0.001, help="Deadline of the whole execution, in seconds.")
]


def _code_version(value: str | None) -> str | None:
    if value is not None and not CODE_VERSION_RE.match(value):
        raise typer.BadParameter(f"must be {CODE_VERSION_RULE}, not {value!r}")
    return value


CodeVersionOption = Annotated[
    str | None,
    typer.Option(
        "--code-version",
        envvar="CEREBELUM_CODE_VERSION",
        callback=_code_version,
        help="This process's code version (default: $CEREBELUM_CODE_VERSION, else a hash of the handler modules' source).",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Idempotency key (1-200 chars): a second start with it returns the first execution."),
]


@dataclass
class Settings:
    db: str | None = None
    handlers: list[str] = field(default_factory=list)
    debug: bool = False
    code_version: str | None = None  # the global --code-version (docs/deploys.md)


def settings_of(ctx: typer.Context, db: str | None, handlers: list[str] | None, debug: bool) -> Settings:
    """Options given before the subcommand, then after it: handlers add up, the later --db wins."""
    root = ctx.find_root().obj or Settings()
    merged = Settings(db or root.db, [*root.handlers, *(handlers or [])], debug or root.debug, root.code_version)
    if not merged.handlers and os.environ.get("CEREBELUM_HANDLERS"):
        raw = os.environ["CEREBELUM_HANDLERS"].replace(os.pathsep, ",")
        merged.handlers = [item.strip() for item in raw.split(",") if item.strip()]
    return merged


def err(message: str) -> None:
    print(message, file=sys.stderr)


def fail(message: str, code: int = 2) -> NoReturn:
    err(message)
    raise typer.Exit(code)


@contextmanager
def guard(settings: Settings, origin: str = "") -> Iterator[None]:
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
            err(f"{prefix}{problem}")
        raise typer.Exit(2) from None
    except StoreUnavailable as exc:
        if settings.debug:
            traceback.print_exc()
        fail(f"error: {scrub(str(exc))}", 1)  # a database URL's password never reaches the terminal
    except (CerebelumError, InvalidInput) as exc:
        if settings.debug:
            traceback.print_exc()
        fail(f"error: {scrub(str(exc))}", 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if settings.debug:
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {scrub(str(exc))} (run with --debug for the traceback)", 1)


def open_engine(settings: Settings, load_handlers: bool = True) -> Engine:
    if load_handlers:
        for spec in settings.handlers:
            import_handlers(spec)
    return Engine(settings.db, workers=0, code_version=settings.code_version)


def definitions() -> Definitions:
    """Checking and compiling without a database (validate, graph)."""
    return Definitions(expression_compiler(), default_registry)


FRAME = re.compile(r'^  File "(.+)", line (\d+), in ', re.MULTILINE)


def last_frame(error: dict[str, Any] | None) -> str | None:
    """`file:line` of the innermost frame of an error's traceback (the user's code)."""
    trace = (error or {}).get("traceback")
    frames = FRAME.findall(trace) if isinstance(trace, str) else []
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else None


def warn_if_memory(url: str, command: str, lost: str) -> None:
    """`memory://` lives as long as this process: say so where the work outlives it."""
    if url.startswith("memory:"):
        err(f"warning: --db {url} keeps everything in this process only: {lost} when '{command}' exits; "
             "use sqlite:///file.db or postgresql://... to keep it")


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

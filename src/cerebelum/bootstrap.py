"""The composition root: a database URL (and any overrides) in, adapters out.
Nothing else builds them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cerebelum.application.activities import StepScope
from cerebelum.application.changes import ListenerFactory
from cerebelum.application.code_versions import CodeVersion, check_code_version
from cerebelum.application.handlers import HandlerRegistry
from cerebelum.domain.ports import Calendar, Clock, ExpressionCompiler, IdSource, Store

DEFAULT_DB = "sqlite:///cerebelum.db"


def database_url(url: str | None = None) -> str:
    """The URL given, else $CEREBELUM_DB, else SQLite in the working directory."""
    return url or os.environ.get("CEREBELUM_DB") or DEFAULT_DB


@dataclass(frozen=True)
class Adapters:
    """Everything an Engine plugs into its use cases."""

    store: Store
    compiler: ExpressionCompiler
    clock: Clock
    ids: IdSource
    step_scope: StepScope  # transparent interception of time and randomness inside handlers
    listener: ListenerFactory | None  # other processes' changes (PostgreSQL LISTEN), or None: poll
    calendar: Calendar  # schedules' tick arithmetic (cron, time zones)


def build_adapters(
    url: str,
    *,
    store: Store | None = None,
    compiler: ExpressionCompiler | None = None,
    clock: Clock | None = None,
    ids: IdSource | None = None,
) -> Adapters:
    """The production adapters for `url`, each replaceable (tests inject fakes)."""
    from cerebelum.infrastructure.calendar import CronCalendar
    from cerebelum.infrastructure.deterministic.interception import step_scope
    from cerebelum.infrastructure.system import SystemClock, UuidSource

    return Adapters(
        store=store if store is not None else open_store(url),
        compiler=compiler if compiler is not None else expression_compiler(),
        clock=clock if clock is not None else SystemClock(),
        ids=ids if ids is not None else UuidSource(),
        step_scope=step_scope,
        listener=change_listener(url),
        calendar=CronCalendar(),
    )


CODE_VERSION_ENV = "CEREBELUM_CODE_VERSION"


def code_version_of(handlers: HandlerRegistry, given: str | None = None) -> CodeVersion:
    """The process's code version: `given`, else $CEREBELUM_CODE_VERSION, else the
    hash of the source of its handler modules (docs/deploys.md)."""
    from cerebelum.infrastructure.code_version import source_version

    if given is not None:
        check_code_version(given, "code_version")
    elif os.environ.get(CODE_VERSION_ENV):
        given = check_code_version(os.environ[CODE_VERSION_ENV], CODE_VERSION_ENV)
    return CodeVersion(handlers, given, source_version)
def offline_adapters() -> tuple[ExpressionCompiler, Clock, StepScope]:
    """What a replay needs when there is no database (`replay --file`, cerebelum.testing)."""
    from cerebelum.infrastructure.deterministic.interception import step_scope
    from cerebelum.infrastructure.system import SystemClock

    return expression_compiler(), SystemClock(), step_scope


def open_store(url: str) -> Store:
    """`memory://` for the in-memory adapters; any SQLAlchemy URL for SQL."""
    if url.startswith("memory:"):
        from cerebelum.infrastructure.memory.store import MemoryStore

        return MemoryStore()
    from cerebelum.infrastructure.sql.store import SqlStore

    return SqlStore(url)


def expression_compiler() -> ExpressionCompiler:
    from cerebelum.infrastructure.expressions import CelCompiler

    return CelCompiler()


def change_listener(url: str) -> ListenerFactory | None:
    """LISTEN/NOTIFY on PostgreSQL; elsewhere followers poll."""
    if not url.startswith(("postgresql", "postgres:")):
        return None
    from cerebelum.infrastructure.pubsub.pg_listener import PgListener

    return lambda on_events, on_queue: PgListener(url, on_events, on_queue)


def upgrade_database(url: str) -> str:
    """Apply migrations to head; return the revision now current."""
    if url.startswith("memory:"):
        return "memory"
    from cerebelum.infrastructure.sql.migrate import current_revision
    from cerebelum.infrastructure.sql.store import SqlStore

    store = SqlStore(url)  # migrates to head on first use
    try:
        return current_revision(store.engine) or "none"
    finally:
        store.close()

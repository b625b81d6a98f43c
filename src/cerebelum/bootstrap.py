"""The composition root: a database URL in, adapters out. Nothing else builds them."""

from __future__ import annotations

import os

from cerebelum.domain.ports import ExpressionCompiler, Store

DEFAULT_DB = "sqlite:///cerebelum.db"


def database_url(url: str | None = None) -> str:
    """The URL given, else $CEREBELUM_DB, else SQLite in the working directory."""
    return url or os.environ.get("CEREBELUM_DB") or DEFAULT_DB


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

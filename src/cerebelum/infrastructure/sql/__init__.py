"""SQL adapters of the store ports (SQLite and PostgreSQL), with their migrations."""

from cerebelum.infrastructure.sql.store import SqlStore

__all__ = ["SqlStore"]

"""Alembic environment: runs on the connection the caller passes in.

There is no alembic.ini and no URL here: `migrate.upgrade()` opens the
connection (and holds the lock) and hands it over in
`config.attributes["connection"]`, so migrations join its transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cerebelum.infrastructure.sql.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("cerebelum migrations need config.attributes['connection']")
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("cerebelum migrations run online only")
run_migrations_online()

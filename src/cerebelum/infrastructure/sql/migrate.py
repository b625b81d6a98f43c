"""Apply the packaged Alembic migrations, safely from several processes at once.

There is no alembic.ini: the config is built here, `script_location` points
at the `migrations` directory next to this file, and the connection is handed
to env.py in `config.attributes["connection"]`.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from cerebelum.infrastructure.sql.database import WRITE_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed: every Cerebelum process takes this advisory lock to migrate.
PG_MIGRATION_LOCK = 0x63657265_62656C75  # "cerebelu"

# alembic.context / alembic.op are process-wide proxies: one command at a time.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this package (read from files, no database)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never migrated.

    One SELECT: cheap enough to run every time a store is opened.
    """
    with engine.connect() as connection:
        try:
            value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):
            # No alembic_version table yet. A real outage shows up again in upgrade().
            return None
    return None if value is None else str(value)


def upgrade(engine: Engine) -> None:
    """Migrate to head in one transaction; concurrent callers wait, then find nothing to do.

    On PostgreSQL a transaction-scoped advisory lock serialises migrators (it
    is released by the commit or rollback, so it can never leak onto a pooled
    connection); on SQLite the BEGIN IMMEDIATE of a write connection does.
    Expects an engine built by `database.build_engine`.
    """
    config = alembic_config()
    writer = engine.execution_options(**{WRITE_OPTION: True})
    with _ALEMBIC_LOCK, writer.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def ensure_current(engine: Engine) -> None:
    """Upgrade only if the database is behind: the common case costs one SELECT."""
    if current_revision(engine) != head_revision():
        upgrade(engine)

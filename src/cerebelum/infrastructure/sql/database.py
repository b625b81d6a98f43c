"""One database: URL -> engine, the dialect quirks, and the error boundary.

Everything dialect-specific lives here; the repositories only see read() and
write() connections, and only the project's own exceptions come out.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool

from cerebelum.domain.errors import CerebelumError, ConfigurationError, Conflict, StoreUnavailable
from cerebelum.infrastructure.deterministic.interception import REAL_DATETIME
from cerebelum.infrastructure.redaction import mask_url, scrub

# Execution option that marks a connection as a writer; on SQLite its
# transactions start with BEGIN IMMEDIATE (see _sqlite_begin).
WRITE_OPTION = "cerebelum_write"

SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
PING_AFTER_IDLE_S = 2.0


def normalize_url(raw: str) -> URL:
    """Accept sqlite:// and postgresql:// URLs; PostgreSQL always goes through psycopg 3."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {scrub(repr(raw))}") from exc
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    raise ConfigurationError(f"unsupported database URL scheme {url.drivername!r}: use sqlite:// or postgresql://")


def display_name(url: URL) -> str:
    """The URL without its password, for messages and logs."""
    return mask_url(url._replace(password=None).render_as_string(hide_password=False))  # and a ?password= too


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module: _sqlite_begin
    # emits BEGIN itself, so DDL and writes really are transactional.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _set_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _set_wal(cursor: Any) -> None:
    """Switch to WAL (persistent in the file). The switch needs the database to
    itself, so a connection opened while another migrates may find it busy:
    retry briefly; once any connection has switched, the pragma is a no-op."""
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")  # answers "memory" for :memory:, harmless
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front: two processes appending to the
    # same log must queue here, not both read the same next sequence.
    # A deferred BEGIN keeps readers concurrent under WAL.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def build_engine(url: URL) -> Engine:
    """An engine with the pool and per-connection settings each dialect needs."""
    if url.get_backend_name() == "sqlite":
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if is_sqlite_memory(url):
            # One connection shared by every thread, or each would see its own empty database.
            engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
        else:
            engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_timeout=30,
        pool_recycle=1800,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )
    event.listen(engine, "connect", _plan_once)
    _ping_idle_connections(engine)
    return engine


def _plan_once(dbapi_connection: Any, _record: Any) -> None:
    """The statements psycopg prepares (those run 5+ times on a connection: the
    hot path) are planned once. Left to choose, PostgreSQL re-plans the append
    batch on every call, which costs more than running it. A session setting,
    so URL `options` and PGOPTIONS still apply; a server or pooler that does
    not take it (PostgreSQL < 12) just plans as it likes."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("SET plan_cache_mode = force_generic_plan")
    except psycopg.Error:
        pass
    finally:
        dbapi_connection.autocommit = autocommit


def _ping_idle_connections(engine: Engine) -> None:
    """Like `pool_pre_ping`, but only for connections idle for a while: a ping
    on every checkout would cost a round trip per step. A connection that
    breaks while busy fails its statement (StoreUnavailable, which callers
    retry) and the pool is renewed."""

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("used_at")
        if last is not None and time.monotonic() - last < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("connection failed its ping")

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)


EVENTS_CHANNEL = "cerebelum_events"  # payload: "<execution id> <last sequence> <status> <lease owner or empty>"
QUEUE_CHANNEL = "cerebelum_queue"  # payload: an execution id that became claimable


def sqlite_time(moment: datetime | None) -> str | None:
    """As SQLAlchemy's SQLite DateTime stores a UTCDateTime: naive UTC text."""
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def utc_now() -> datetime:
    """The wall clock for lease and wake-up times (never intercepted)."""
    return REAL_DATETIME.now(UTC)


def first_line(exc: BaseException) -> str:
    detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    return scrub(lines[0] if lines else type(detail).__name__)[:300]  # a driver may quote the connection string


def driver_error(exc: Exception, name: str, conflict: str) -> Exception | None:
    """A driver exception as the project's own, or None if it is not a driver's."""
    if isinstance(exc, sqlite3.IntegrityError | psycopg.IntegrityError):
        return Conflict(conflict)
    if isinstance(exc, sqlite3.OperationalError | psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"database {name} is unavailable: {first_line(exc)}")
    if isinstance(exc, sqlite3.Error | psycopg.Error):
        return CerebelumError(f"database {name} rejected the request: {first_line(exc)}")
    return None


class Database:
    """An engine plus the rules for using it: writes in one transaction,
    driver errors translated into Conflict / StoreUnavailable."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.name = display_name(self.url)
        self.engine = build_engine(self.url)
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        # A shared in-memory SQLite connection cannot hold two transactions at once.
        self._lock: AbstractContextManager[Any] = threading.RLock() if is_sqlite_memory(self.url) else nullcontext()

    @contextmanager
    def translated(self, conflict: str = "the write conflicts with stored data") -> Iterator[None]:
        """Turn SQLAlchemy/driver errors into the project's exceptions."""
        try:
            yield
        except IntegrityError as exc:
            raise Conflict(conflict) from exc
        except (OperationalError, InterfaceError, DisconnectionError, PoolTimeout) as exc:
            raise StoreUnavailable(f"database {self.name} is unavailable: {first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise CerebelumError(f"database {self.name} rejected the request: {first_line(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries; its transaction is rolled back on exit."""
        with self._lock, self.translated(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def write(self, conflict: str = "the write conflicts with stored data") -> Iterator[Connection]:
        """One transaction, committed on exit and rolled back on any error."""
        with self._lock, self.translated(conflict), self._writer.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection whose every statement is a transaction of its own: one round
        trip, not three, for a statement that is atomic by itself."""
        with self._lock, self.translated(), self._writer.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def driver(self, conflict: str = "the write conflicts with stored data", write: bool = True) -> Iterator[Any]:
        """The driver's own connection, for the hot path (see `appends`).

        PostgreSQL: psycopg in autocommit, so each statement is its own
        transaction (one round trip). SQLite: sqlite3 inside BEGIN IMMEDIATE,
        committed on exit (`write=False`: no transaction, each query reads
        on its own). Driver errors come out as the project's exceptions.
        """
        with self._lock:
            with self.translated(conflict):
                pooled = self.engine.raw_connection()
            raw: Any = pooled.driver_connection
            try:
                if self.is_postgresql:
                    raw.autocommit = True
                    try:
                        yield raw
                    finally:
                        if not (raw.closed or raw.broken):
                            raw.autocommit = False
                elif not write:
                    yield raw
                else:
                    raw.execute("BEGIN IMMEDIATE")
                    try:
                        yield raw
                    except BaseException:
                        raw.execute("ROLLBACK")
                        raise
                    raw.execute("COMMIT")
            except Exception as exc:
                mine = driver_error(exc, self.name, conflict)
                if mine is None:
                    raise
                if self.is_postgresql and (raw.closed or raw.broken):  # a lost connection, not a deadlock or timeout
                    pooled.invalidate(exc)
                    self.engine.dispose(close=False)  # its neighbours are likely broken too
                raise mine from exc
            finally:
                pooled.close()

    @property
    def conninfo(self) -> str:
        """PostgreSQL: the URL as libpq takes it, for connections made outside the pool."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    def notify_appended(self, connection: Connection, execution_id: str, sequence: int, status: str, origin: str | None) -> None:
        """PostgreSQL, on commit: a log grew (the append batch's notice) and the
        execution is claimable (the queue's), in one round trip."""
        if self.is_postgresql:
            grew = f"{execution_id} {sequence} {status} {origin or ''}"
            connection.execute(
                text("SELECT pg_notify(:events, :grew), pg_notify(:queue, :id)"),
                {"events": EVENTS_CHANNEL, "grew": grew, "queue": QUEUE_CHANNEL, "id": execution_id},
            )

    def notify_queue(self, connection: Connection, execution_id: str) -> None:
        """PostgreSQL: wake idle workers, on commit: an execution became claimable."""
        if self.is_postgresql:
            connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": QUEUE_CHANNEL, "payload": execution_id})

    def ping(self) -> None:
        with self.read() as connection:
            connection.execute(text("SELECT 1")).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()

"""The floor (W4): one single-row INSERT and its COMMIT per step, with the bare driver.

PostgreSQL: psycopg 3 directly, a non-autocommit connection, so each step is the
driver's BEGIN, the INSERT (prepared after 5 uses, psycopg's default) and COMMIT: the
least any engine pays for one durable transaction per step. Also measured, as
`autocommit`: the INSERT alone on an autocommit connection (one round trip).

SQLite: sqlite3 with the journal mode, synchronous level and busy timeout read (by the
parent, with `engine_sqlite_pragmas`) from a connection opened by Cerebelum's own
`build_engine`, so they follow the engine if it changes; each step is BEGIN IMMEDIATE,
INSERT, COMMIT, as the engine's writers do.

From one connection, and from FLOOR_CONNECTIONS threads with one connection each.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from perf.common import BenchDefect, Clock, Sizes, db_cpu_meter

PAYLOAD = json.dumps({"type": "node_completed", "node_id": "s3", "output": 3, "recorded": {}, "attempt": 1})
SQLITE_FALLBACK = {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30_000}


def engine_sqlite_pragmas(path: str) -> dict[str, Any]:
    """The settings a connection made by Cerebelum's engine has (its journal mode persists in the file)."""
    try:
        from sqlalchemy import text

        from cerebelum.infrastructure.sql.database import build_engine, normalize_url

        engine = build_engine(normalize_url(f"sqlite:///{path}"))
        try:
            with engine.connect() as connection:
                found = {
                    name: connection.execute(text(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "synchronous", "busy_timeout")
                }
        finally:
            engine.dispose()
        return {**found, "probed": True}
    except Exception as exc:  # the engine moved things: say so, use the documented settings
        return {**SQLITE_FALLBACK, "probed": False, "probe_error": repr(exc)}


def run(spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    connections = int(spec.get("connections", 1))
    total = sizes.floor_one if connections == 1 else sizes.floor_many
    if spec["backend"] == "postgresql":
        result = _postgresql(spec, connections, total)
    else:
        result = _sqlite(spec, connections, total)
    result.update(connections=connections, commits=total)
    return result


def _timed(
    spec: dict[str, Any],
    connections: int,
    total: int,
    open_writer: Callable[[int], Callable[[int], None]],
    rows: Callable[[], int],
) -> dict[str, float]:
    """`connections` writers (one connection each) share `total` steps; wall time from a common start.
    Afterwards the table must hold exactly `total` more rows."""
    writers = [open_writer(w) for w in range(connections)]
    for writer in writers:  # warm: the statement prepared, the connection's first transaction done
        for i in range(6):
            writer(-1 - i)
    rows_before = rows()
    share, extra = divmod(total, connections)
    start = threading.Barrier(connections + 1)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        write = writers[index]
        count = share + (1 if index < extra else 0)
        start.wait()
        try:
            for i in range(count):
                write(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    dbcpu = db_cpu_meter(spec)
    try:
        db0 = dbcpu.total()
        start.wait()
        clock = Clock()
        for thread in threads:
            thread.join()
        wall, cpu = clock.read()
        db = dbcpu.total() - db0
    finally:
        dbcpu.close()
    if errors:
        raise errors[0]
    written = rows() - rows_before
    if written != total:
        raise BenchDefect(f"the floor wrote {written} rows, not {total}")
    result = {
        "seconds": wall,
        "ms_per_commit": wall * 1000 / total,
        "commits_per_s": total / wall,
        "cpu_ms_per_commit": cpu * 1000 / total,
    }
    if dbcpu.available:
        result["db_cpu_ms_per_commit"] = db * 1000 / total
    return result


def _postgresql(spec: dict[str, Any], connections: int, total: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(spec["url"], autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE IF NOT EXISTS floor_rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "writer int NOT NULL, n int NOT NULL, payload jsonb NOT NULL)"
        )
    insert = "INSERT INTO floor_rows (writer, n, payload) VALUES (%s, %s, %s)"
    opened: list[Any] = []

    def explicit(writer: int) -> Callable[[int], None]:
        conn = psycopg.connect(spec["url"])
        opened.append(conn)

        def write(i: int) -> None:
            conn.execute(insert, (writer, i, PAYLOAD))
            conn.commit()

        return write

    def autocommit(writer: int) -> Callable[[int], None]:
        conn = psycopg.connect(spec["url"], autocommit=True)
        opened.append(conn)
        return lambda i: conn.execute(insert, (writer, i, PAYLOAD)) and None

    def rows() -> int:
        with psycopg.connect(spec["url"], autocommit=True) as conn:
            (count,) = conn.execute("SELECT count(*) FROM floor_rows").fetchone() or (0,)
            return int(count)

    try:
        result: dict[str, Any] = _timed(spec, connections, total, explicit, rows)
        result["autocommit"] = _timed(spec, connections, total, autocommit, rows)
    finally:
        for conn in opened:
            conn.close()
    result["statement"] = "BEGIN; INSERT (1 row, jsonb); COMMIT  (psycopg, non-autocommit)"
    return result


def _sqlite(spec: dict[str, Any], connections: int, total: int) -> dict[str, Any]:
    import sqlite3

    path = spec["path"]
    pragmas = spec["sqlite_pragmas"]
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=pragmas["busy_timeout"] / 1000)
        conn.execute(f"PRAGMA busy_timeout = {int(pragmas['busy_timeout'])}")
        conn.execute(f"PRAGMA journal_mode = {pragmas['journal_mode']}")
        conn.execute(f"PRAGMA synchronous = {int(pragmas['synchronous'])}")
        opened.append(conn)
        return conn

    connect().execute(
        "CREATE TABLE IF NOT EXISTS floor_rows "
        "(id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, n INTEGER NOT NULL, payload TEXT NOT NULL)"
    )
    insert = "INSERT INTO floor_rows (writer, n, payload) VALUES (?, ?, ?)"

    def explicit(writer: int) -> Callable[[int], None]:
        conn = connect()

        def write(i: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, (writer, i, PAYLOAD))
            conn.execute("COMMIT")

        return write

    def autocommit(writer: int) -> Callable[[int], None]:
        conn = connect()
        return lambda i: conn.execute(insert, (writer, i, PAYLOAD)) and None

    def rows() -> int:
        (count,) = connect().execute("SELECT count(*) FROM floor_rows").fetchone()
        return int(count)

    try:
        result: dict[str, Any] = _timed(spec, connections, total, explicit, rows)
        result["autocommit"] = _timed(spec, connections, total, autocommit, rows)
    finally:
        for conn in opened:
            conn.close()
    result["statement"] = "BEGIN IMMEDIATE; INSERT (1 row); COMMIT  (sqlite3)"
    result["sqlite_pragmas"] = pragmas
    return result

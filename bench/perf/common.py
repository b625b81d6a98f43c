"""What every side of the suite shares: sizes, meters, the statement counter, the result line.

Nothing here imports Cerebelum or DBOS: a child process imports only what it measures.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULT_PREFIX = "PERF_RESULT "
STEPS = 10  # the chain workflow: 10 no-op steps one after another
W2_CONCURRENCY = (16, 64)
W3_CONCURRENCY = 50
FLOOR_CONNECTIONS = 16


@dataclass(frozen=True)
class Sizes:
    w1: int  # sequential executions of the 10-step chain (and as many of the 1-step one, for the fit)
    w2: int  # executions of the 10-step chain per W2 run
    w3: int  # items of the one `map`
    floor_one: int  # INSERT+COMMITs from one connection
    floor_many: int  # INSERT+COMMITs in all from FLOOR_CONNECTIONS connections
    warmup: int  # untimed executions before each timed phase


SIZES = {
    "full": Sizes(w1=200, w2=1000, w3=1000, floor_one=2000, floor_many=10_000, warmup=10),
    "quick": Sizes(w1=30, w2=160, w3=200, floor_one=300, floor_many=1600, warmup=3),
}


class BenchDefect(Exception):
    """The run did not do what it claims to measure (an execution did not complete, ...)."""


def emit(result: dict[str, Any]) -> None:
    """The child's one result line (the parent ignores every other line)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def sizes_dict(sizes: Sizes) -> dict[str, int]:
    return asdict(sizes)


# -- meters -----------------------------------------------------------------------------


def _status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def rss_mib() -> float:
    """Resident set size of this process now."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    return _status_kib("VmHWM") / 1024


def fit(one: float, ten: float, steps: int = STEPS) -> tuple[float, float]:
    """Two points of a line cost(steps) = fixed + steps * per_step: (per_step, fixed)."""
    per_step = (ten - one) / (steps - 1)
    return per_step, one - per_step


def w1_result(
    n: int,
    latencies: dict[int, list[float]],
    cpu: dict[int, float],
    db: dict[int, float] | None,
    counts: dict[int, tuple[Any, Any]],
    verified: int,
) -> dict[str, Any]:
    """W1's figures from its measurements, the same derivation for every system:
    wall, process CPU and server CPU fitted between the 1-step and 10-step chains."""
    ms10, ms1 = mean(latencies[STEPS]) * 1000, mean(latencies[1]) * 1000
    per_step, fixed = fit(ms1, ms10)
    cpu_step, cpu_fixed = fit(cpu[1] * 1000 / n, cpu[STEPS] * 1000 / n)
    result = {
        "executions": n,
        "ms_per_execution_10": ms10,
        "ms_per_execution_1": ms1,
        "ms_per_step": per_step,
        "ms_fixed": fixed,
        "steps_per_s": STEPS * 1000 / ms10,
        "p50_ms_10": percentile(latencies[STEPS], 0.5) * 1000,
        "p95_ms_10": percentile(latencies[STEPS], 0.95) * 1000,
        "cpu_ms_per_step": cpu_step,
        "cpu_ms_fixed": cpu_fixed,
        "cpu_ms_per_execution_10": cpu[STEPS] * 1000 / n,
        "statements": statement_profile(counts[1], counts[STEPS], n),
        "verified": verified,
    }
    if db is not None:
        db_step, db_fixed = fit(db[1] * 1000 / n, db[STEPS] * 1000 / n)
        result.update(db_cpu_ms_per_step=db_step, db_cpu_ms_fixed=db_fixed)
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


# Connections of the bench's own meters: the statement counter does not count them.
METER_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()


class PgBackendCpu:
    """CPU time of the PostgreSQL backends serving one database (same machine only).

    A thread samples `pg_stat_activity` for the database's backend pids and reads
    their CPU from /proc every `interval` s; `total()` samples at once and returns
    the CPU they used since `start()`. A backend that exits between two samples
    loses at most one interval of CPU (pools keep theirs open, so this is rare).
    The sampler's own connection is to the admin database, so it is not counted.
    """

    def __init__(self, admin_url: str, database: str, interval: float = 0.25) -> None:
        import psycopg

        self.database = database
        self.interval = interval
        self._conn = psycopg.connect(admin_url, autocommit=True)
        METER_CONNECTIONS.add(self._conn)
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = _proc_cpu_s(self._conn.info.backend_pid) is not None

    def _sample(self, first: bool = False) -> None:
        with self._lock:
            rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)).fetchall()
            for (pid,) in rows:
                cpu = _proc_cpu_s(pid)
                if cpu is None:
                    continue
                if pid not in self._base:
                    self._base[pid] = cpu if first else 0.0  # born after start(): all of its CPU counts
                self._last[pid] = cpu

    def start(self) -> PgBackendCpu:
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="pg-backend-cpu", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def total(self) -> float:
        self._sample()
        with self._lock:
            return sum(self._last[pid] - self._base[pid] for pid in self._last)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._conn.close()


class NoDbCpu:
    """SQLite: the database works inside the measured process; nothing to add."""

    available = False

    def start(self) -> NoDbCpu:
        return self

    def total(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def db_cpu_meter(spec: dict[str, Any]) -> PgBackendCpu | NoDbCpu:
    if spec["backend"] == "postgresql":
        meter = PgBackendCpu(spec["admin_url"], spec["database"])
        if meter.available:
            return meter.start()
        meter.close()
    return NoDbCpu()


# -- the SQL statement counter -----------------------------------------------------------

COUNTERS = ("round_trips", "statements", "begins", "commits", "rollbacks", "savepoints", "autocommit", "checkouts")
_LITERALS = re.compile(r"'[^']*'|\b\d+\b")


def _normalise(statement: str) -> str:
    text = " ".join(statement.split())
    return _LITERALS.sub("?", text)[:110]


class StatementCounter:
    """Counts, at the driver, what this process sends to the database, whatever sends it
    (SQLAlchemy, or code that uses the driver's connection directly, as hot paths do):

    - PostgreSQL: psycopg's Cursor.execute/executemany and Connection.commit/rollback are
      wrapped, and their async twins; the BEGIN psycopg sends by itself before the first statement of a
      transaction is counted too.
    - SQLite: every sqlite3 connection opened through SQLAlchemy gets a trace callback,
      which sees every statement stepped, including the BEGIN the module adds itself.

    Counters: `statements` (everything but transaction control), `begins`, `commits`,
    `rollbacks` (ROLLBACK TO a savepoint is not one), `savepoints` (SAVEPOINT, RELEASE,
    ROLLBACK TO), `autocommit` (statements run outside an explicit transaction: each is a
    transaction of its own), `round_trips` (all of them, PostgreSQL: each is one), and
    `checkouts` from SQLAlchemy pools. Plus every statement's text, normalised.
    Not seen: LISTEN connections' notifications.
    """

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.texts: Counter[str] = Counter()
        event.listen(Engine, "connect", self._on_connect)
        event.listen(Pool, "checkout", self._checkout)
        self._wrap_psycopg()

    def record(self, text: str, autocommit: bool, implicit_begin: bool = False) -> None:
        head = text.lstrip().split(None, 2)
        word = head[0].upper() if head else ""
        with self._lock:
            self.counts["round_trips"] += 1 + implicit_begin
            self.counts["begins"] += implicit_begin
            if (word == "ROLLBACK" and len(head) > 1 and head[1].upper().startswith("TO")) or word in ("SAVEPOINT", "RELEASE"):
                self.counts["savepoints"] += 1
            elif word == "BEGIN":
                self.counts["begins"] += 1
            elif word in ("COMMIT", "END"):
                self.counts["commits"] += 1
            elif word == "ROLLBACK":
                self.counts["rollbacks"] += 1
            else:
                self.counts["statements"] += 1
                self.counts["autocommit"] += autocommit
                self.texts[_normalise(text)] += 1

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        import sqlite3

        if isinstance(dbapi_connection, sqlite3.Connection):
            connection = dbapi_connection
            connection.set_trace_callback(lambda text: self.record(text, not connection.in_transaction))

    def _checkout(self, *_args: Any) -> None:
        with self._lock:
            self.counts["checkouts"] += 1

    def _wrap_psycopg(self) -> None:
        try:
            import psycopg
            from psycopg.pq import TransactionStatus
        except ImportError:
            return
        counter = self
        idle = TransactionStatus.IDLE

        def text_of(query: Any, connection: Any) -> str:
            if isinstance(query, str):
                return query
            if isinstance(query, bytes):
                return query.decode(errors="replace")
            try:
                return str(query.as_string(connection))
            except Exception:
                return type(query).__name__

        def sent(cursor: Any, query: Any) -> None:
            connection = cursor.connection
            if connection in METER_CONNECTIONS:
                return
            autocommit = bool(connection.autocommit)
            begins = not autocommit and connection.info.transaction_status == idle
            counter.record(text_of(query, connection), autocommit, begins)

        original_execute = psycopg.Cursor.execute
        original_executemany = psycopg.Cursor.executemany
        original_commit = psycopg.Connection.commit
        original_rollback = psycopg.Connection.rollback

        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent(cursor, query)
            return original_execute(cursor, query, *args, **kwargs)

        def executemany(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent(cursor, query)
            return original_executemany(cursor, query, *args, **kwargs)

        def commit(connection: Any) -> Any:
            if not connection.autocommit and connection.info.transaction_status != idle:
                counter.record("COMMIT", False)
            return original_commit(connection)

        def rollback(connection: Any) -> Any:
            if not connection.autocommit and connection.info.transaction_status != idle:
                counter.record("ROLLBACK", False)
            return original_rollback(connection)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        psycopg.Connection.commit = commit  # type: ignore[method-assign]
        psycopg.Connection.rollback = rollback  # type: ignore[method-assign]

        # The async driver too (an engine may append from its event loop).
        original_aexecute = psycopg.AsyncCursor.execute
        original_aexecutemany = psycopg.AsyncCursor.executemany
        original_acommit = psycopg.AsyncConnection.commit
        original_arollback = psycopg.AsyncConnection.rollback

        async def aexecute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent(cursor, query)
            return await original_aexecute(cursor, query, *args, **kwargs)

        async def aexecutemany(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent(cursor, query)
            return await original_aexecutemany(cursor, query, *args, **kwargs)

        async def acommit(connection: Any) -> Any:
            if not connection.autocommit and connection.info.transaction_status != idle:
                counter.record("COMMIT", False)
            return await original_acommit(connection)

        async def arollback(connection: Any) -> Any:
            if not connection.autocommit and connection.info.transaction_status != idle:
                counter.record("ROLLBACK", False)
            return await original_arollback(connection)

        psycopg.AsyncCursor.execute = aexecute  # type: ignore[method-assign,assignment]
        psycopg.AsyncCursor.executemany = aexecutemany  # type: ignore[method-assign,assignment]
        psycopg.AsyncConnection.commit = acommit  # type: ignore[method-assign,assignment]
        psycopg.AsyncConnection.rollback = arollback  # type: ignore[method-assign,assignment]

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            return Counter(self.counts), Counter(self.texts)


def counter_delta(
    before: tuple[Counter[str], Counter[str]], after: tuple[Counter[str], Counter[str]]
) -> tuple[Counter[str], Counter[str]]:
    return after[0] - before[0], after[1] - before[1]


def statement_profile(
    one: tuple[Counter[str], Counter[str]], ten: tuple[Counter[str], Counter[str]], executions: int
) -> dict[str, Any]:
    """Per step (slope between the 1-step and 10-step workflows) and per execution (fixed)."""
    profile: dict[str, Any] = {}
    for counts in (one[0], ten[0]):  # each ends a transaction of its own
        counts["transactions"] = counts["commits"] + counts["rollbacks"] + counts["autocommit"]
    for key in (*COUNTERS, "transactions"):
        per_step, fixed = fit(one[0][key] / executions, ten[0][key] / executions)
        profile[key] = {
            "per_step": round(per_step, 3),
            "fixed": round(fixed, 3),
            "per_10_step_execution": ten[0][key] / executions,
        }
    profile["top_statements_per_10_step_execution"] = [
        [text, round(count / executions, 2)] for text, count in ten[1].most_common(15)
    ]
    return profile


class Clock:
    """Wall and process CPU time (every thread of this process) over a phase."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


PG_ADMIN = os.environ.get("CEREBELUM_BENCH_PG") or os.environ.get("CEREBELUM_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database `<prefix>_<pid>` made from PG_ADMIN, dropped at the end: its URL."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

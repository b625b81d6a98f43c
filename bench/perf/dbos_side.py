"""The peer: DBOS Transact running the same workflows (W1 and W2) on the same server.

`@DBOS.workflow` calling 10 `@DBOS.step` no-ops (and a 1-step one for the W1 fit).
W2 is driven in one of two ways (`--dbos-w2`):

- `threads` (the default, DBOS's best figure here): a ThreadPoolExecutor of N threads,
  each calling the workflow function directly, so exactly N workflows are in flight and
  each runs in the thread that started it (no queue polling in the path);
- `queue`: a DBOS queue with `worker_concurrency=N` (polling every 10 ms), N enqueued
  workflows at a time being what DBOS's own docs recommend for bounded concurrency.

On SQLite DBOS is given the engine's settings (WAL, synchronous=NORMAL) unless
`--dbos-sqlite-pragmas default` (DBOS's own: rollback journal, synchronous=FULL).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from perf.common import (
    STEPS,
    BenchDefect,
    Clock,
    Sizes,
    StatementCounter,
    counter_delta,
    db_cpu_meter,
    peak_rss_mib,
    rss_mib,
    w1_result,
)

BLOCK = 10
EXPECTED = sum(range(STEPS))  # the chain's result: its steps return their index


def sqlite_pragmas(pragmas: dict[str, Any]) -> None:
    """Every SQLite connection this process opens gets the engine's journal and sync settings."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA journal_mode = {pragmas['journal_mode']}")
            dbapi_connection.execute(f"PRAGMA synchronous = {pragmas['synchronous']}")

    event.listen(Engine, "connect", on_connect)


def verify(dbos: Any, name: str, expected: int, steps: int) -> int:
    """Every workflow of `name` succeeded, there are `expected` of them, each with `steps` steps."""
    workflows = dbos.list_workflows(name=name, load_input=False, load_output=False)
    bad = [w for w in workflows if w.status != "SUCCESS"]
    if bad:
        raise BenchDefect(f"DBOS workflow {bad[0].workflow_id} is {bad[0].status}")
    if len(workflows) != expected:
        raise BenchDefect(f"DBOS: {len(workflows)} {name} workflows recorded, {expected} run")
    for workflow in workflows:
        recorded = len(dbos.list_workflow_steps(workflow.workflow_id, load_output=False))
        if recorded != steps:
            raise BenchDefect(f"DBOS workflow {workflow.workflow_id} recorded {recorded} steps, not {steps}")
    return len(workflows)


def run(spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    import dbos as dbos_package
    from dbos import DBOS, DBOSConfig

    counter = StatementCounter()
    if spec["backend"] == "sqlite" and spec.get("dbos_sqlite_pragmas", "same") == "same":
        sqlite_pragmas(spec["sqlite_pragmas"])
    config: DBOSConfig = {"name": "cerebelum-bench", "system_database_url": spec["url"], "log_level": "WARNING"}
    if spec.get("dbos_pool_size"):
        config["sys_db_pool_size"] = int(spec["dbos_pool_size"])
    DBOS(config=config)

    @DBOS.step(name="noop")
    def noop(i: int) -> int:
        return i

    @DBOS.workflow(name="chain10")
    def chain10() -> int:
        return sum(noop(i) for i in range(STEPS))

    @DBOS.workflow(name="chain1")
    def chain1() -> int:
        return noop(0)

    DBOS.launch()
    try:
        for _ in range(sizes.warmup):
            chain10()
            chain1()
        if spec["workload"] == "w1":
            result = w1(DBOS, spec, sizes, counter, chain10, chain1)
        elif spec["workload"] == "w2":
            result = w2(DBOS, spec, sizes, chain10)
        else:
            raise ValueError(f"DBOS has no workload {spec['workload']}")
    finally:
        DBOS.destroy(destroy_registry=True)
    result["version"] = dbos_package.__version__ if hasattr(dbos_package, "__version__") else _version()
    return result


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


def w1(dbos: Any, spec: dict[str, Any], sizes: Sizes, counter: StatementCounter, chain10: Any, chain1: Any) -> dict[str, Any]:
    n = sizes.w1
    functions = {STEPS: chain10, 1: chain1}
    expected = {STEPS: EXPECTED, 1: 0}
    latencies: dict[int, list[float]] = {STEPS: [], 1: []}
    cpu = {STEPS: 0.0, 1: 0.0}
    db = {STEPS: 0.0, 1: 0.0}
    zero = counter.snapshot()
    counts = {STEPS: counter_delta(zero, zero), 1: counter_delta(zero, zero)}
    dbcpu = db_cpu_meter(spec)
    try:
        for start in range(0, n, BLOCK):
            for steps in (STEPS, 1):
                before, db0, clock = counter.snapshot(), dbcpu.total(), Clock()
                for _ in range(min(BLOCK, n - start)):
                    began = time.perf_counter()
                    value = functions[steps]()
                    latencies[steps].append(time.perf_counter() - began)
                    if value != expected[steps]:
                        raise BenchDefect(f"DBOS chain{steps} returned {value!r}")
                cpu[steps] += clock.read()[1]
                db[steps] += dbcpu.total() - db0
                delta = counter_delta(before, counter.snapshot())
                counts[steps] = (counts[steps][0] + delta[0], counts[steps][1] + delta[1])
    finally:
        dbcpu.close()
    verified = verify(dbos, "chain10", n + sizes.warmup, STEPS) + verify(dbos, "chain1", n + sizes.warmup, 1)
    return w1_result(n, latencies, cpu, db if dbcpu.available else None, counts, verified)


def w2(dbos: Any, spec: dict[str, Any], sizes: Sizes, chain10: Any) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    mode = spec.get("dbos_w2", "threads")
    n = sizes.w2
    queue = dbos.register_queue("bench", worker_concurrency=concurrency, polling_interval_sec=0.01) if mode == "queue" else None
    rss_start = rss_mib()
    rss_quarter = float("nan")
    dbcpu = db_cpu_meter(spec)
    try:
        db0, clock = dbcpu.total(), Clock()
        if queue is not None:
            handles = [queue.enqueue(chain10) for _ in range(n)]
            values = []
            for index, handle in enumerate(handles):
                values.append(handle.get_result())
                if index + 1 == n // 4:
                    rss_quarter = rss_mib()
        else:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
                futures = [pool.submit(chain10) for _ in range(n)]
                values = []
                for index, future in enumerate(futures):
                    values.append(future.result())
                    if index + 1 == n // 4:
                        rss_quarter = rss_mib()
        wall, cpu = clock.read()
        db = dbcpu.total() - db0
    finally:
        dbcpu.close()
    rss_end = rss_mib()
    if any(value != EXPECTED for value in values):
        raise BenchDefect("DBOS W2: a workflow returned a wrong result")
    verified = verify(dbos, "chain10", n + sizes.warmup, STEPS) - sizes.warmup
    steps = n * STEPS
    result = {
        "concurrency": concurrency,
        "mode": mode,
        "executions": n,
        "seconds": wall,
        "steps_per_s": steps / wall,
        "executions_per_s": n / wall,
        "cpu_ms_per_step": cpu * 1000 / steps,
        "rss_mib_start": rss_start,
        "rss_mib_quarter": rss_quarter,
        "rss_mib_end": rss_end,
        "rss_growth_mib": rss_end - rss_quarter,
        "peak_rss_mib": peak_rss_mib(),
        "verified": verified,
    }
    if dbcpu.available:
        result["db_cpu_ms_per_step"] = db * 1000 / steps
    return result

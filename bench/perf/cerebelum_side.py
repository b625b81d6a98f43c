"""Cerebelum's side: W1 (latency), W2 (throughput with N in flight), W3 (map fan-out).

Driven through the public Python API only (`Engine.*_async`, `work_async`, `subscribe`),
one `Engine` in this process, in one asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cerebelum
from perf.common import (
    STEPS,
    W3_CONCURRENCY,
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

BLOCK = 10  # W1 alternates blocks of 10-step and 1-step executions, so drift hits both alike


def registry(handler_kind: str) -> cerebelum.HandlerRegistry:
    handlers = cerebelum.HandlerRegistry()
    if handler_kind == "async":

        async def noop_async(ctx: Any) -> int:
            return ctx.index if ctx.index is not None else 1

        handlers.register("noop", noop_async)
    else:

        def noop(ctx: Any) -> int:
            return ctx.index if ctx.index is not None else 1

        handlers.register("noop", noop)
    return handlers


def chain(name: str, steps: int) -> dict[str, Any]:
    nodes = {f"s{i}": {"type": "function", "config": {"handler": "noop"}} for i in range(steps)}
    edges = [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(steps - 1)]
    return {"name": name, "entrypoint": "s0", "nodes": nodes, "edges": edges}


FANOUT = {
    "name": "fanout",
    "entrypoint": "m",
    "nodes": {
        "m": {
            "type": "map",
            "config": {
                "items": "input.items",
                "max_concurrency": W3_CONCURRENCY,
                "node": {"type": "function", "config": {"handler": "noop"}},
            },
        }
    },
}


async def verify(engine: cerebelum.Engine, ids: list[str], node_completed: int) -> int:
    """Every execution completed, with exactly `node_completed` node_completed events."""
    limit = asyncio.Semaphore(16)

    async def check(execution_id: str) -> None:
        async with limit:
            execution = await engine.status_async(execution_id)
            if execution.status != "completed":
                raise BenchDefect(f"execution {execution_id} is {execution.status}: {execution.error}")
            events = await engine.events_async(execution_id)
            done = sum(1 for event in events if event.type == "node_completed")
            if done != node_completed:
                raise BenchDefect(f"execution {execution_id} has {done} node_completed events, not {node_completed}")

    await asyncio.gather(*(check(i) for i in ids))
    return len(ids)


async def w1(engine: cerebelum.Engine, spec: dict[str, Any], sizes: Sizes, counter: StatementCounter) -> dict[str, Any]:
    await engine.create_workflow_async(chain("chain10", STEPS))
    await engine.create_workflow_async(chain("chain1", 1))
    for _ in range(sizes.warmup):
        await engine.run_async("chain10")
        await engine.run_async("chain1")
    dbcpu = db_cpu_meter(spec)
    latencies: dict[int, list[float]] = {STEPS: [], 1: []}
    cpu = {STEPS: 0.0, 1: 0.0}
    db = {STEPS: 0.0, 1: 0.0}
    ids: dict[int, list[str]] = {STEPS: [], 1: []}
    zero = counter.snapshot()
    counts = {STEPS: counter_delta(zero, zero), 1: counter_delta(zero, zero)}
    try:
        for start in range(0, sizes.w1, BLOCK):
            for steps in (STEPS, 1):
                before, db0, clock = counter.snapshot(), dbcpu.total(), Clock()
                for _ in range(min(BLOCK, sizes.w1 - start)):
                    began = time.perf_counter()
                    execution = await engine.run_async(f"chain{steps}")
                    latencies[steps].append(time.perf_counter() - began)
                    ids[steps].append(execution.id)
                cpu[steps] += clock.read()[1]
                db[steps] += dbcpu.total() - db0
                delta = counter_delta(before, counter.snapshot())
                counts[steps] = (counts[steps][0] + delta[0], counts[steps][1] + delta[1])
    finally:
        dbcpu.close()
    n = sizes.w1
    verified = await verify(engine, ids[STEPS], STEPS) + await verify(engine, ids[1], 1)
    return w1_result(n, latencies, cpu, db if dbcpu.available else None, counts, verified)


async def w2(engine: cerebelum.Engine, spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    n = sizes.w2
    await engine.create_workflow_async(chain("chain10", STEPS))
    for _ in range(sizes.warmup):
        await engine.run_async("chain10")
    loop = asyncio.get_running_loop()
    finished: set[str] = set()
    failed: list[str] = []
    all_done = asyncio.Event()
    rss_quarter: list[float] = []

    def on_end(execution_id: str, ok: bool) -> None:
        if ok:
            finished.add(execution_id)
        else:
            failed.append(execution_id)
        if len(finished) == max(1, n // 4) and not rss_quarter:
            rss_quarter.append(rss_mib())
        if len(finished) + len(failed) >= n:
            all_done.set()

    def on_event(event: cerebelum.Event) -> None:
        if event.type in ("execution_completed", "execution_failed"):
            loop.call_soon_threadsafe(on_end, event.execution_id, event.type == "execution_completed")

    unsubscribe = engine.subscribe(on_event)
    rss_start = rss_mib()
    dbcpu = db_cpu_meter(spec)
    stop = asyncio.Event()
    try:
        db0, clock = dbcpu.total(), Clock()
        ids: list[str] = []

        async def produce(count: int) -> None:
            for _ in range(count):
                ids.append((await engine.execute_async("chain10")).id)

        # Start (enqueue) the n executions, `concurrency` at a time; then a pool of
        # `concurrency` in this process drains them.
        share, extra = divmod(n, concurrency)
        await asyncio.gather(*(produce(share + (1 if i < extra else 0)) for i in range(concurrency)))
        enqueue_s = clock.read()[0]
        pool = asyncio.ensure_future(engine.work_async(concurrency, stop))
        try:
            await asyncio.wait_for(all_done.wait(), timeout=0.9 * float(spec.get("timeout", 1800)))
        except TimeoutError as exc:
            raise BenchDefect(f"W2: {len(finished)} of {n} executions completed before the time-out") from exc
        wall, cpu = clock.read()
        db = dbcpu.total() - db0
    finally:
        dbcpu.close()
        unsubscribe()
        stop.set()
    await pool
    rss_end = rss_mib()
    if failed:
        raise BenchDefect(f"W2: {len(failed)} executions failed, e.g. {failed[0]}")
    if finished != set(ids):
        raise BenchDefect("W2: the completions seen are not the executions started")
    verified = await verify(engine, ids, STEPS)
    steps = n * STEPS
    result = {
        "concurrency": concurrency,
        "executions": n,
        "seconds": wall,
        "enqueue_s": enqueue_s,
        "drain_s": wall - enqueue_s,
        "steps_per_s": steps / wall,
        "executions_per_s": n / wall,
        "cpu_ms_per_step": cpu * 1000 / steps,
        "rss_mib_start": rss_start,
        "rss_mib_quarter": rss_quarter[0] if rss_quarter else float("nan"),
        "rss_mib_end": rss_end,
        "rss_growth_mib": rss_end - (rss_quarter[0] if rss_quarter else rss_start),
        "peak_rss_mib": peak_rss_mib(),
        "verified": verified,
    }
    if dbcpu.available:
        result["db_cpu_ms_per_step"] = db * 1000 / steps
    return result


async def w3(engine: cerebelum.Engine, spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    await engine.create_workflow_async(FANOUT)
    warm = await engine.run_async("fanout", {"items": list(range(2 * W3_CONCURRENCY))})
    if warm.status != "completed":
        raise BenchDefect(f"W3 warm-up: {warm.status} {warm.error}")
    items = list(range(sizes.w3))
    dbcpu = db_cpu_meter(spec)
    try:
        db0, clock = dbcpu.total(), Clock()
        execution = await engine.run_async("fanout", {"items": items})
        wall, cpu = clock.read()
        db = dbcpu.total() - db0
    finally:
        dbcpu.close()
    await verify(engine, [execution.id], sizes.w3 + 1)  # the items and the map node itself
    if execution.output != items:
        raise BenchDefect("W3: the map's output is not its items in order")
    result = {
        "items": sizes.w3,
        "max_concurrency": W3_CONCURRENCY,
        "seconds": wall,
        "items_per_s": sizes.w3 / wall,
        "cpu_ms_per_item": cpu * 1000 / sizes.w3,
        "verified": 1,
    }
    if dbcpu.available:
        result["db_cpu_ms_per_item"] = db * 1000 / sizes.w3
    return result


async def measure(spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    counter = StatementCounter()  # before the engine exists, so it sees its every connection
    engine = cerebelum.Engine(spec["url"], workers=0, handlers=registry(spec.get("handler", "sync")))
    try:
        if spec["workload"] == "w1":
            return await w1(engine, spec, sizes, counter)
        if spec["workload"] == "w2":
            return await w2(engine, spec, sizes)
        if spec["workload"] == "w3":
            return await w3(engine, spec, sizes)
        raise ValueError(f"unknown workload {spec['workload']}")
    finally:
        await engine.close_async()
        await asyncio.to_thread(engine.close)


def run(spec: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    result = asyncio.run(measure(spec, sizes))
    result["version"] = cerebelum.__version__
    return result

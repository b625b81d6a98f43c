"""Queue benchmarks (issue 15, docs/queues.md). Prints figures; asserts nothing.

1. Claim cost with limits on versus off: W2-like throughput (executions of a
   10-step no-op chain drained by an in-process pool of 64) on the unlimited
   `default` queue and on a queue with `concurrency 64`, alternating in the
   same process run; the ratio limited/unlimited is printed.
2. Rate accuracy: executions of a no-op workflow on a queue with `rate 50/s`
   and `rate 500/s`, drained for `--seconds` by a pool; starts per second
   achieved (slots given, from `first_claimed_at`) and the most in any
   one-second window.

Usage: .venv/bin/python bench/bench_queues.py [--only sqlite|postgresql] [--executions 400] [--rounds 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import cerebelum
from cerebelum.application.queues import set_queue

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf.common import scratch_postgres

STEPS = 10
CHAIN = {
    "name": "chain10",
    "entrypoint": "s0",
    "nodes": {f"s{i}": {"type": "function", "config": {"handler": "noop"}} for i in range(STEPS)},
    "edges": [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(STEPS - 1)],
}
TICK = {"name": "tick", "entrypoint": "t", "nodes": {"t": {"type": "delay", "config": {"seconds": 0}}}}


def registry() -> cerebelum.HandlerRegistry:
    handlers = cerebelum.HandlerRegistry()
    handlers.register("noop", lambda ctx: 1)
    return handlers


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    with scratch_postgres("cerebelum_queues_bench") as url:
        yield url


async def drain(
    engine: cerebelum.Engine, workflow: str, count: int, queue: str, pool: int, seconds: float | None
) -> tuple[float, list[str]]:
    """Enqueue `count`, then run a pool of `pool` until all ended (or `seconds` passed): (wall s, ids)."""
    engine.workers = 0  # enqueue only (`work_async` below sets it): the pool starts with the clock
    before = await asyncio.to_thread(engine.store.queue.counts)
    ended_before = before["completed"] + before["failed"]
    ids = [(await engine.execute_async(workflow, {}, queue=queue)).id for _ in range(count)]
    stop = asyncio.Event()
    began = time.perf_counter()
    work = asyncio.ensure_future(engine.work_async(pool, stop))
    deadline = None if seconds is None else began + seconds
    while True:
        await asyncio.sleep(0.05)
        counts = await asyncio.to_thread(engine.store.queue.counts)
        ended = counts["completed"] + counts["failed"] - ended_before
        if ended >= len(ids) or (deadline is not None and time.perf_counter() > deadline):
            break
    elapsed = time.perf_counter() - began
    stop.set()
    await work
    return elapsed, ids


async def claim_cost(url: str, executions: int, rounds: int) -> None:
    engine = cerebelum.Engine(url, workers=0, handlers=registry(), poll_interval=0.05)
    try:
        await engine.create_workflow_async(CHAIN)
        await asyncio.to_thread(set_queue, engine.store, "limited", 64)
        await drain(engine, "chain10", 20, "default", 64, None)  # warm-up
        rates: dict[str, list[float]] = {"default": [], "limited": []}
        for _ in range(rounds):
            for queue in ("default", "limited"):
                elapsed, _ = await drain(engine, "chain10", executions, queue, 64, None)
                rates[queue].append(executions * STEPS / elapsed)
        off, on = statistics.median(rates["default"]), statistics.median(rates["limited"])
        print(f"  unlimited queue      : {off:8.0f} steps/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['default'])})")
        print(f"  concurrency 64 queue : {on:8.0f} steps/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['limited'])})")
        print(f"  ratio limited/unlimited: {on / off:.3f}")
    finally:
        await engine.close_async()
        await asyncio.to_thread(engine.close)


async def rate_accuracy(url: str, per_second: int, seconds: float) -> None:
    engine = cerebelum.Engine(url, workers=0, handlers=registry(), poll_interval=0.01)
    try:
        await engine.create_workflow_async(TICK)
        queue = f"rate{per_second}"
        await asyncio.to_thread(set_queue, engine.store, queue, None, None, f"{per_second}/s")
        count = int(per_second * seconds)
        _, ids = await drain(engine, "tick", count, queue, 64, seconds + 5)
        rows = [await engine.status_async(i) for i in ids]
        claims = sorted(r.first_claimed_at for r in rows if r.first_claimed_at is not None)
        span = (claims[-1] - claims[0]).total_seconds() if len(claims) > 1 else 0.0
        worst, j = 0, 0
        for i, moment in enumerate(claims):  # the most slots given within any one-second window
            while claims[j] <= moment - timedelta(seconds=1):
                j += 1
            worst = max(worst, i - j + 1)
        achieved = (len(claims) - 1) / span if span else 0.0
        print(f"  rate {per_second}/s over {seconds:.0f} s: {len(claims)} started in {span:.1f} s, {achieved:.1f}/s "
              f"({achieved / per_second:.1%} of the limit; a sliding window lets the first {per_second} start at once), "
              f"most in any 1 s window: {worst}")  # fmt: skip
    finally:
        await engine.close_async()
        await asyncio.to_thread(engine.close)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--executions", type=int, default=400, help="executions per claim-cost round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each rate run")
    parser.add_argument("--rates", default="50,500", help="comma-separated rates per second to check")
    args = parser.parse_args()
    for backend in args.only or ("postgresql", "sqlite"):
        print(f"{backend}:")
        with database(backend) as url:
            asyncio.run(claim_cost(url, args.executions, args.rounds))
        for rate in (int(r) for r in args.rates.split(",") if r):
            with database(backend) as url:
                asyncio.run(rate_accuracy(url, rate, args.seconds))


if __name__ == "__main__":
    main()

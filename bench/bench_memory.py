"""Worker memory over many executions: does RSS level off, or grow with the count?

    .venv/bin/python bench/bench_memory.py [--url URL] [--executions N] [--concurrency C]

Enqueues N executions of the 10-step no-op chain of `make bench` (W2), drains
them with an in-process pool of C, and prints the process's RSS after every
eighth of the completions, then the growth over the second half. A leak grows
with every execution; a warm-up (caches, per-connection page caches, pools)
levels off. Checks that every execution completed. Default: 8,000 executions,
64 in flight, on a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf.cerebelum_side import chain, registry, verify
from perf.common import STEPS, rss_mib

import cerebelum


async def measure(url: str, executions: int, concurrency: int) -> dict[int, float]:
    engine = cerebelum.Engine(url, workers=0, handlers=registry("sync"))
    await engine.create_workflow_async(chain("chain10", STEPS))
    loop = asyncio.get_running_loop()
    finished: set[str] = set()
    marks: dict[int, float] = {0: rss_mib()}
    every = max(1, executions // 8)
    done = asyncio.Event()

    def on_end(execution_id: str) -> None:
        finished.add(execution_id)
        if len(finished) % every == 0:
            marks[len(finished)] = rss_mib()
        if len(finished) == executions:
            done.set()

    def on_event(event: cerebelum.Event) -> None:
        if event.type == "execution_completed":
            loop.call_soon_threadsafe(on_end, event.execution_id)

    engine.subscribe(on_event)
    ids: list[str] = []
    for _ in range(executions):
        ids.append((await engine.execute_async("chain10")).id)
    stop = asyncio.Event()
    pool = asyncio.ensure_future(engine.work_async(concurrency, stop))
    await asyncio.wait_for(done.wait(), timeout=1800)
    stop.set()
    await pool
    if finished != set(ids) or await verify(engine, ids, STEPS) != executions:
        raise SystemExit("not every execution completed")
    engine.close()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--executions", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'memory.db'}"
        began = time.perf_counter()
        marks = asyncio.run(measure(url, args.executions, args.concurrency))
        print(f"{args.executions} executions, {args.concurrency} in flight, {time.perf_counter() - began:.0f} s")
    for count, rss in sorted(marks.items()):
        print(f"  after {count:>6} completions: RSS {rss:6.1f} MiB")
    half = [rss for count, rss in sorted(marks.items()) if count >= args.executions // 2]
    print(
        f"growth over the second half: {half[-1] - half[0]:+.1f} MiB (largest step between eighths there: "
        f"{max(abs(b - a) for a, b in itertools.pairwise(half)):.1f} MiB)"
    )


if __name__ == "__main__":
    main()

"""Worker memory over many executions: does RSS level off, or grow with the count?

    .venv/bin/python bench/bench_memory.py [--url URL] [--executions N] [--concurrency C]

Enqueues N executions of the 10-step no-op chain of `make bench` (W2), drains
them with an in-process pool of C, and prints the process's RSS after the
enqueueing and after every eighth of the completions, then the growth over
the second half of the drain. A leak grows with every execution; a warm-up
(caches, per-connection page caches, pools) levels off. Checks that every
execution completed. Default: 8,000 executions,
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


async def measure(url: str, executions: int, concurrency: int) -> dict[str, float]:
    """RSS before, after enqueueing (a leak there shows as a jump), and after every eighth of the drain."""
    engine = cerebelum.Engine(url, workers=0, handlers=registry("sync"))
    await engine.create_workflow_async(chain("chain10", STEPS))
    loop = asyncio.get_running_loop()
    ended = {"completed": 0, "failed": 0}
    marks: dict[str, float] = {"start": rss_mib()}
    every = max(1, executions // 8)
    done = asyncio.Event()

    def on_end(kind: str) -> None:
        ended[kind] += 1
        if kind == "completed" and ended["completed"] % every == 0:
            marks[f"{ended['completed']} completed"] = rss_mib()
        if kind == "failed" or sum(ended.values()) == executions:
            done.set()

    def on_event(event: cerebelum.Event) -> None:
        if event.type in ("execution_completed", "execution_failed"):
            loop.call_soon_threadsafe(on_end, event.type.removeprefix("execution_"))

    engine.subscribe(on_event)
    ids = [(await engine.execute_async("chain10")).id for _ in range(executions)]
    marks["enqueued"] = rss_mib()
    stop = asyncio.Event()
    pool = asyncio.ensure_future(engine.work_async(concurrency, stop))
    await asyncio.wait_for(done.wait(), timeout=1800)
    stop.set()
    await pool
    if ended["failed"]:
        raise SystemExit("an execution failed")
    await verify(engine, ids, STEPS)  # raises unless every one completed with every step
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
    for label, rss in marks.items():
        print(f"  {label:>16}: RSS {rss:6.1f} MiB")
    drained = [rss for label, rss in marks.items() if label.endswith("completed")]
    half = drained[len(drained) // 2 - 1 :]
    print(
        f"growth over the second half of the drain: {half[-1] - half[0]:+.1f} MiB "
        f"(largest step between eighths there: {max(abs(b - a) for a, b in itertools.pairwise(half)):.1f} MiB)"
    )


if __name__ == "__main__":
    main()

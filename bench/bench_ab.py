"""A/B of two or more commits on W1 or W2, runs alternated (this VM drifts by 30% within minutes).

    .venv/bin/python bench/bench_ab.py f3a7dbb HEAD [--workload w2] [--concurrency 16]
        [--backend postgresql|sqlite] [--rounds 4] [--executions 1000]

Each commit's `src/` is exported with `git archive` into a temporary directory and
imported from there (`PYTHONPATH`) by a fresh process per run, on a fresh database
(PostgreSQL: `cerebelum_bench_ab_<pid>` made from $CEREBELUM_BENCH_PG, else
$CEREBELUM_TEST_PG, else postgresql://postgres@127.0.0.1:5432/test; SQLite: a file in
a temporary directory). Rounds alternate the order of the commits.

- W1: `--executions` runs of the 10-step no-op chain one after another (`Engine.run`),
  after 10 untimed: median milliseconds per execution, and process CPU per execution.
- W2: `--executions` executions of the chain started first, then drained by
  `work_async(--concurrency)` until the change feed has seen every
  `execution_completed`: steps per second from the pool's start, process CPU per step.

Unlike `bench_perf.py` nothing counts statements here (the counter wraps the driver);
the workflow and the handler are the same (`perf.cerebelum_side.chain`, `registry`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = "--child"


def child(workload: str, backend: str, executions: int, concurrency: int) -> None:
    """One measurement, in this process: the tree under test is first on sys.path."""
    import asyncio
    import time

    sys.path.insert(0, str(HERE))
    from perf.cerebelum_side import chain, registry
    from perf.common import scratch_postgres

    import cerebelum

    async def measure(url: str) -> dict[str, float]:
        engine = cerebelum.Engine(url, handlers=registry("sync"), workers=0)
        try:
            await engine.create_workflow_async(chain("chain10", 10))
            for _ in range(10):
                await engine.run_async("chain10")
            if workload == "w1":
                latencies = []
                cpu = time.process_time()
                for _ in range(executions):
                    began = time.perf_counter()
                    done = await engine.run_async("chain10")
                    latencies.append(time.perf_counter() - began)
                    assert done.status == "completed", done.error
                cpu = time.process_time() - cpu
                return {"ms_per_execution": statistics.median(latencies) * 1000, "cpu_ms_per_execution": cpu * 1000 / executions}
            loop, all_done, seen = asyncio.get_running_loop(), asyncio.Event(), [0]

            def on_event(event: cerebelum.Event) -> None:
                if event.type in ("execution_completed", "execution_failed"):
                    assert event.type == "execution_completed", event.payload
                    seen[0] += 1
                    if seen[0] == executions:
                        loop.call_soon_threadsafe(all_done.set)

            engine.subscribe(on_event)
            for _ in range(executions):
                await engine.execute_async("chain10")
            stop = asyncio.Event()
            began, cpu = time.perf_counter(), time.process_time()
            pool = asyncio.ensure_future(engine.work_async(concurrency, stop))
            await asyncio.wait_for(all_done.wait(), timeout=600)
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu
            stop.set()
            await pool
            return {"steps_per_s": executions * 10 / wall, "cpu_ms_per_step": cpu * 1000 / (executions * 10)}
        finally:
            await engine.close_async()

    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(measure(f"sqlite:///{tmp}/ab.db"))
    else:
        with scratch_postgres("cerebelum_bench_ab") as url:
            result = asyncio.run(measure(url))
    print(json.dumps(result))


def export(commit: str, into: Path) -> Path:
    """`src/` of `commit`, unpacked under `into`."""
    target = into / commit.replace("/", "_")
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=HERE.parent, capture_output=True, check=True).stdout
    archive_file = target / "src.tar"
    archive_file.write_bytes(archive)
    with tarfile.open(archive_file) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+")
    parser.add_argument("--workload", choices=("w1", "w2"), default="w2")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--executions", type=int, default=None, help="default: 300 for W1, 1,000 for W2")
    args = parser.parse_args()
    executions = args.executions or (300 if args.workload == "w1" else 1000)
    results: dict[str, list[dict[str, float]]] = {commit: [] for commit in args.commits}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {commit: export(commit, Path(tmp)) for commit in args.commits}
        for round_ in range(args.rounds):
            order = args.commits if round_ % 2 == 0 else args.commits[::-1]
            for commit in order:
                env = {**os.environ, "PYTHONPATH": str(trees[commit])}
                command = [sys.executable, __file__, CHILD, args.workload, args.backend, str(executions), str(args.concurrency)]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
                results[commit].append(json.loads(out.strip().splitlines()[-1]))
    what = f"{args.workload.upper()}" + (f" c={args.concurrency}" if args.workload == "w2" else "") + f" {args.backend}"
    print(f"{what}, {args.rounds} alternated rounds, {executions} executions per run")
    first = args.commits[0]
    for key in results[first][0]:
        base = statistics.median(r[key] for r in results[first])
        print(f"  {key}")
        for commit in args.commits:
            values = [r[key] for r in results[commit]]
            runs = " / ".join(f"{v:.2f}" for v in values)
            middle = statistics.median(values)
            print(f"    {commit:<12} median {middle:10.2f}  x{middle / base:5.2f}  ({runs})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()

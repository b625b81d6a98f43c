"""Benchmark of retention: purge rate, and a worker's throughput during a purge.

    .venv/bin/python bench/bench_retention.py --db postgresql://postgres@127.0.0.1:5432/bench [--executions 100000]

1. Seeds `--executions` finished executions that ended 60 days ago (4 events
   each), written in bulk.
2. Starts a worker pool in this process on a backlog of short executions
   (two no-op steps each) and counts how many it completes per second,
   for `--window` seconds.
3. Meanwhile-free baseline done, runs `cerebelum executions purge --older-than
   30d` in another process (the real CLI, batches of 500) and reports the
   executions deleted per second, and the worker's throughput during the
   purge against the baseline.

The database given is emptied first. Prints a small table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert

import cerebelum
from cerebelum.domain.workflow import content_digest
from cerebelum.infrastructure.sql import SqlStore, schema

FLOW: dict[str, Any] = {
    "name": "bench_work",
    "entrypoint": "a",
    "nodes": {"a": {"type": "function", "config": {"handler": "noop"}}, "b": {"type": "function", "config": {"handler": "noop"}}},
    "edges": [{"from": "a", "to": "b"}],
}
OLD = {"name": "bench_old", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "noop"}}}, "edges": []}


def seed(url: str, count: int) -> None:
    store = SqlStore(url)
    ended = datetime.now(UTC) - timedelta(days=60)
    with store.engine.begin() as connection:
        for table in (schema.events, schema.executions, schema.workflows):
            connection.execute(delete(table))
        connection.execute(
            insert(schema.workflows).values(
                id=str(uuid.uuid4()), name="bench_old", version=1, definition=OLD, digest=content_digest(OLD), created_at=ended
            )
        )
    chunk = 5_000
    for start in range(0, count, chunk):
        rows, events = [], []
        for _ in range(min(chunk, count - start)):
            execution_id = f"exec-{uuid.uuid4()}"
            rows.append(
                {"id": execution_id, "workflow": "bench_old", "version": 1, "status": "completed", "input": {}, "output": {},
                 "error": None, "seed": 1, "virtual_time": False, "created_at": ended, "started_at": ended,
                 "completed_at": ended, "last_sequence": 3, "updated_at": ended}
            )  # fmt: skip
            for sequence, kind in enumerate(("execution_started", "node_started", "node_completed", "execution_completed")):
                events.append(
                    {"id": str(uuid.uuid4()), "execution_id": execution_id, "sequence": sequence, "type": kind,
                     "node_id": None if sequence in (0, 3) else "a", "payload": {}, "timestamp": ended}
                )  # fmt: skip
        with store.engine.begin() as connection:
            connection.execute(insert(schema.executions), rows)
            connection.execute(insert(schema.events), events)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=f"sqlite:///{Path.cwd() / 'bench_retention.db'}")
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=5.0, help="seconds of the baseline measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    began = time.perf_counter()
    seed(args.db, args.executions)
    print(f"seeded {args.executions} finished executions in {time.perf_counter() - began:.1f} s")

    registry = cerebelum.HandlerRegistry()
    registry.register("noop", lambda ctx: {"ok": True})
    completed = 0
    lock = threading.Lock()

    def count(event: Any) -> None:
        nonlocal completed
        if event.type == "execution_completed":
            with lock:
                completed += 1

    with cerebelum.Engine(args.db, workers=args.concurrency, handlers=registry) as engine:
        engine.create_workflow(FLOW)
        stop = threading.Event()

        def feed() -> None:  # keep a backlog of work for the pool
            while not stop.is_set():
                if engine.store.queue.counts()["pending"] < 200:
                    for _ in range(100):
                        engine.execute("bench_work", {})
                else:
                    time.sleep(0.05)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        engine.subscribe(count)
        engine.start_worker(args.concurrency)
        time.sleep(1.0)  # warm up
        with lock:
            before = completed
        time.sleep(args.window)
        with lock:
            baseline = (completed - before) / args.window

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        cli = [sys.executable, "-c", "from cerebelum.entrypoints.cli.app import main; main()"]
        with lock:
            before = completed
        began = time.perf_counter()
        done = subprocess.run(
            [*cli, "--db", args.db, "executions", "purge", "--older-than", "30d", "--json"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        took = time.perf_counter() - began
        with lock:
            during = (completed - before) / took
        stop.set()
        feeder.join()
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    answer = json.loads(done.stdout)
    purged, seconds = answer["count"], answer["seconds"]
    print(f"{'database':<34} {args.db.split('://')[0]}")
    print(f"{'purged':<34} {purged} executions ({purged * 4} events) in {seconds:.1f} s, {answer['batches']} batches")
    print(f"{'purge rate':<34} {purged / seconds:,.0f} executions/s")
    print(f"{'worker throughput before':<34} {baseline:,.1f} executions/s")
    print(f"{'worker throughput during purge':<34} {during:,.1f} executions/s ({during / baseline:.0%} of before;")
    print(f"{'':<34} the purge process's {took:.1f} s, its start included)")


if __name__ == "__main__":
    main()

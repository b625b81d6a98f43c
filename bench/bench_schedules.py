"""Schedule benchmark (issue 14): the lateness of ticks with 100 every-second
schedules on PostgreSQL, fired and run by one or more worker pools. Prints
figures; asserts nothing.

Lateness of a tick = the start time of its execution (its `created_at`) minus
the tick. Ticks missed (not started, catchup `latest`) are counted apart.

Usage: .venv/bin/python bench/bench_schedules.py [--schedules 100] [--seconds 20] [--engines 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections import Counter

import psycopg
from psycopg import sql

import cerebelum
from cerebelum.application.schedules import create_schedule

ADMIN = os.environ.get("CEREBELUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FLOW = {"name": "noop1", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "noop"}}}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--engines", type=int, default=2, help="processes' worth of worker pools (engines in this process)")
    args = parser.parse_args()
    name = f"cerebelum_bench_sched_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    registry = cerebelum.HandlerRegistry()
    registry.register("noop", lambda ctx: 1)
    try:
        engines = [cerebelum.Engine(url, handlers=registry, workers=16) for _ in range(args.engines)]
        try:
            engines[0].create_workflow(FLOW)
            ports = engines[0].host.schedule_ports()
            for i in range(args.schedules):
                create_schedule({"name": f"s{i:03d}", "workflow": "noop1", "every_s": 1, "overlap": "allow"}, ports)
            began = time.monotonic()
            for engine in engines:
                engine.start_worker()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - began
            rows = [e for e in engines[0].executions(limit=1_000_000) if e.schedule_name]
            late = [(e.created_at - e.schedule_tick).total_seconds() for e in rows if e.schedule_tick]
            ticks = Counter(
                t.outcome for i in range(args.schedules) for t in engines[0].store.schedules.ticks(f"s{i:03d}", 100)
            )
            counts = [engine.host.schedule_ticks() for engine in engines]
        finally:
            for engine in engines:
                engine.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    expected = args.schedules * elapsed
    print(f"{args.schedules} every-second schedules, {args.engines} engine(s) with a pool each, {elapsed:.1f} s on PostgreSQL")
    print(f"executions started: {len(rows)} (about {expected:.0f} ticks passed); history outcomes: {dict(ticks)}")
    if late:
        print(f"lateness: median {statistics.median(late) * 1000:.0f} ms, p99 {percentile(late, 0.99) * 1000:.0f} ms, "
              f"max {max(late) * 1000:.0f} ms")  # fmt: skip
    print("per engine (started, skipped, late):", [(c.started, c.skipped, c.late) for c in counts])


if __name__ == "__main__":
    main()

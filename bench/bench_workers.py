"""Worker-pool benchmarks (issue: durable worker pool). Prints figures; asserts nothing.

1. Throughput with 1, 2 and 4 `cerebelum worker` processes on PostgreSQL:
   N executions of a 3-step no-op workflow, enqueued first, then drained.
2. Time from a worker's death (SIGKILL mid-step) to its execution resuming in
   another worker process, with --lease-ttl 2 and --poll-interval 0.1.
3. Worker RSS with many parked executions: the engine parks `--parked-real`
   executions on a one-day delay itself (RSS sampled as they accumulate), the
   log of one of them is then cloned in SQL until `--parked` executions are
   parked in the database, and an idle worker polls over them for a while: its
   RSS must not grow with the number parked.

Usage: .venv/bin/python bench/bench_workers.py [--executions 600] [--parked 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

import cerebelum

ADMIN = os.environ.get("CEREBELUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CLI = str(Path(sys.executable).parent / "cerebelum")
HANDLERS = """
import time, cerebelum
@cerebelum.handler("noop")
def noop(ctx):
    return ctx.index if ctx.index is not None else 1
@cerebelum.handler("slow")
def slow(ctx):
    time.sleep(2.0)
    return "slow"
"""
NOOP3 = {
    "name": "noop3",
    "entrypoint": "a",
    "nodes": {n: {"type": "function", "config": {"handler": "noop"}} for n in "abc"},
    "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
}
SLOW = {"name": "slow1", "entrypoint": "s", "nodes": {"s": {"type": "function", "config": {"handler": "slow"}}}}
PARK = {
    "name": "park1",
    "entrypoint": "a",
    "nodes": {
        "a": {"type": "function", "config": {"handler": "noop"}},
        "d": {"type": "delay", "config": {"seconds": 86400}},
    },
    "edges": [{"from": "a", "to": "d"}],
}


def fresh_database() -> str:
    name = f"cerebelum_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def spawn_worker(url: str, handlers: Path, log: Path, concurrency: int = 16, ttl: float = 30.0) -> subprocess.Popen[bytes]:
    args = [CLI, "worker", "--db", url, "--handlers", str(handlers), "-c", str(concurrency)]
    args += ["--lease-ttl", str(ttl), "--poll-interval", "0.1"]
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def count_status(url: str, status: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM executions WHERE status = %s", (status,)).fetchone()
    return int(row[0]) if row else 0


def throughput(handlers: Path, work: Path, processes: int, executions: int) -> dict[str, float]:
    url = fresh_database()
    try:
        with cerebelum.Engine(url, workers=0) as engine:
            for _ in range(executions):
                engine.execute(NOOP3, {})
        workers = [spawn_worker(url, handlers, work / f"w{processes}-{i}.log") for i in range(processes)]
        began = time.monotonic()
        while count_status(url, "completed") < executions and time.monotonic() - began < 600:
            time.sleep(0.1)
        elapsed = time.monotonic() - began
        stop(workers)
        done = count_status(url, "completed")
        if done != executions:  # a rate over part of the work would flatter it
            raise SystemExit(f"{processes} worker(s): only {done} of {executions} executions completed in {elapsed:.0f} s")
        rate = done / elapsed
        return {"processes": processes, "executions": done, "seconds": elapsed, "per_s": rate, "steps_per_s": 3 * rate}
    finally:
        drop_database(url)


def recovery(handlers: Path, work: Path) -> dict[str, float]:
    url = fresh_database()
    try:
        with cerebelum.Engine(url, workers=0) as engine:
            execution = engine.execute(SLOW, {})
            first = spawn_worker(url, handlers, work / "victim.log", concurrency=1, ttl=2.0)
            deadline = time.monotonic() + 30
            while not any(e.type == "node_started" for e in engine.events(execution.id)):
                if time.monotonic() > deadline:
                    raise SystemExit("recovery: the first worker never started the node")
                time.sleep(0.02)
            time.sleep(0.3)  # inside the handler
            first.kill()
            killed = time.time()
            second = spawn_worker(url, handlers, work / "rescuer.log", concurrency=1, ttl=2.0)
            done = engine.wait(execution.id, timeout=60)
            stop([second])
            if done.status != "completed":
                raise SystemExit(f"recovery: the execution ended {done.status}, not completed")
            first.wait()
            resumed = min(e.timestamp.timestamp() for e in engine.events(execution.id) if e.timestamp.timestamp() > killed)
            return {"kill_to_resume_s": resumed - killed}
    finally:
        drop_database(url)


def parked_memory(handlers: Path, work: Path, real: int, total: int) -> list[tuple[str, int, int]]:
    url = fresh_database()
    rows: list[tuple[str, int, int]] = []
    try:
        worker = spawn_worker(url, handlers, work / "parker.log", concurrency=32)
        try:
            with cerebelum.Engine(url, workers=0) as engine:
                time.sleep(2)
                rows.append(("idle worker", 0, rss_kib(worker.pid)))
                batch = max(1, real // 4)
                for mark in range(batch, real + 1, batch):
                    for _ in range(batch):
                        engine.execute(PARK, {})
                    while engine.store.queue.counts()["parked"] < mark:
                        time.sleep(0.2)
                    rows.append(("parked by the engine", mark, rss_kib(worker.pid)))
            clone_parked(url, total - real)
            time.sleep(5)  # let the worker poll over them
            rows.append(("parked in the database (cloned)", total, rss_kib(worker.pid)))
        finally:
            stop([worker])
    finally:
        drop_database(url)
    return rows


def clone_parked(url: str, copies: int) -> None:
    """Copy one parked execution's row and log `copies` times (fresh ids, same content)."""
    with psycopg.connect(url) as conn:
        source = conn.execute("SELECT id FROM executions WHERE wake_at IS NOT NULL LIMIT 1").fetchone()
        assert source is not None
        conn.execute("CREATE TEMP TABLE ids AS SELECT 'exec-' || gen_random_uuid() AS id FROM generate_series(1, %s)", (copies,))
        conn.execute(
            """INSERT INTO executions (id, workflow, version, status, input, output, error, seed, virtual_time,
                 created_at, started_at, completed_at, last_sequence, updated_at, wake_at)
               SELECT ids.id, x.workflow, x.version, x.status, x.input, x.output, x.error, x.seed, x.virtual_time,
                 x.created_at, x.started_at, x.completed_at, x.last_sequence, x.updated_at, x.wake_at
               FROM ids, executions x WHERE x.id = %s""",
            (source[0],),
        )
        conn.execute(
            """INSERT INTO events (id, execution_id, sequence, type, node_id, payload, timestamp,
                 engine_version, workflow_version)
               SELECT gen_random_uuid()::text, ids.id, e.sequence, e.type, e.node_id, e.payload, e.timestamp,
                 e.engine_version, e.workflow_version
               FROM ids, events e WHERE e.execution_id = %s""",
            (source[0],),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=600)
    parser.add_argument("--parked", type=int, default=100_000)
    parser.add_argument("--parked-real", type=int, default=2_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cerebelum-bench-"))
    handlers = work / "bench_handlers.py"
    handlers.write_text(HANDLERS)
    figures: dict[str, object] = {}

    print(f"1. throughput, {args.executions} executions x 3 steps, PostgreSQL, worker processes with -c 16")
    rates = [throughput(handlers, work, n, args.executions) for n in (1, 2, 4)]
    for row in rates:
        ratio = row["per_s"] / rates[0]["per_s"]
        rates_text = f"{row['per_s']:7.1f} executions/s  {row['steps_per_s']:7.1f} steps/s"
        print(f"   {int(row['processes'])} process(es): {rates_text}  x{ratio:.2f} vs 1")
    figures["throughput"] = rates

    print("2. recovery: SIGKILL a worker mid-step (lease ttl 2 s, poll 0.1 s)")
    rec = recovery(handlers, work)
    print(f"   kill -> resumed in another process: {rec['kill_to_resume_s']:.2f} s (it completed: checked above)")
    figures["recovery"] = rec

    print(f"3. worker RSS with parked executions ({args.parked_real} parked by the engine, the rest cloned)")
    rows = parked_memory(handlers, work, args.parked_real, args.parked)
    base = rows[0][2]
    for label, count, rss in rows:
        print(f"   {label:<34} {count:>7}  RSS {rss / 1024:7.1f} MiB  ({(rss - base) / 1024:+.1f} MiB vs idle)")
    figures["parked_rss"] = rows
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

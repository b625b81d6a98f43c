"""Signal latency: from `engine.signal(...)` to the waiting execution's next `node_started`,
with the execution run by a separate `cerebelum worker` process (issue 12's benchmark).

    .venv/bin/python bench/bench_signals.py [--signals 200] [--only sqlite|postgresql]

Set-up per backend (PostgreSQL: a fresh database `cerebelum_bench_signals_<pid>` made from
$CEREBELUM_BENCH_PG, else $CEREBELUM_TEST_PG, else postgresql://postgres@127.0.0.1:5432/test,
dropped at the end; SQLite: a file in a temporary directory). `--signals` executions of
`approve (wait for signal go) -> after (a function)` are started and a worker process
(`cerebelum worker --concurrency 8`) runs them until every one is parked at its wait,
holding no lease. Then, one at a time, this process sends `go` to one execution and
waits until that execution's `node_started after` is in the log; the latency is the
event's timestamp (written by the worker, wall clock, millisecond precision) minus the
wall-clock moment just before the `signal` call. Also reported: how long the `signal`
call itself took (the sender's acknowledgement: the `signal_received` event committed).

Both processes run on this machine's two cores with PostgreSQL, so the figures are
noisy; the target of the issue is a median under 20 ms on PostgreSQL. The reference in
the same run: the wake-up of a parked timer by the same worker (a `delay` of 0 s after a
parked wait is not comparable), so the floor printed is the database round trip
(`SELECT 1`) measured from this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cerebelum

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf.common import percentile, scratch_postgres

CLI = Path(sys.executable).parent / "cerebelum"
HANDLERS = """
import cerebelum


@cerebelum.handler("after")
def after(ctx):
    return ctx.data
"""
FLOW = {
    "name": "bench_signal",
    "entrypoint": "approve",
    "nodes": {
        "approve": {"type": "wait", "config": {"signal": "go"}},
        "after": {"type": "function", "config": {"handler": "after"}},
    },
    "edges": [{"from": "approve", "to": "after"}],
}


def run(url: str, count: int, workdir: Path) -> dict[str, float]:
    (workdir / "h.py").write_text(HANDLERS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    with cerebelum.Engine(url, workers=0, handlers=cerebelum.HandlerRegistry()) as engine:
        engine.create_workflow(FLOW)
        ids = [engine.execute("bench_signal", {}).id for _ in range(count)]
        worker = subprocess.Popen(
            [str(CLI), "worker", "--db", url, "--handlers", "h.py", "--concurrency", "8", "--poll-interval", "0.2"],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while engine.store.queue.counts()["parked"] < count:
                assert worker.poll() is None and time.monotonic() < deadline, "the executions never parked"
                time.sleep(0.2)
            floor = []
            for _ in range(50):
                started = time.perf_counter()
                engine.store.executions.get(ids[0])
                floor.append((time.perf_counter() - started) * 1000)
            latencies, acks = [], []
            for execution_id in ids:
                sent = datetime.now(UTC)
                started = time.perf_counter()
                engine.signal(execution_id, "go", {"ok": True})
                acks.append((time.perf_counter() - started) * 1000)
                while True:
                    events = engine.events(execution_id)
                    node = next((e for e in events if e.type == "node_started" and e.node_id == "after"), None)
                    if node is not None:
                        latencies.append((node.timestamp - sent).total_seconds() * 1000)
                        break
                    time.sleep(0.001)
        finally:
            worker.terminate()
            worker.communicate(timeout=30)
    return {
        "signals": count,
        "latency_median_ms": statistics.median(latencies),
        "latency_p99_ms": percentile(latencies, 0.99),
        "ack_median_ms": statistics.median(acks),
        "ack_p99_ms": percentile(acks, 0.99),
        "row_read_median_ms": statistics.median(floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "sqlite"):
            results["sqlite"] = run(f"sqlite:///{work / 'bench.db'}", args.signals, work)
        if args.only in (None, "postgresql"):
            with scratch_postgres("cerebelum_bench_signals") as url:
                results["postgresql"] = run(url, args.signals, work)
    head = f"{'backend':<11} {'signals':>7} {'to node_started median':>23} {'p99':>8}"
    print(f"{head} {'ack median':>11} {'ack p99':>8} {'row read':>9}")
    for backend, r in results.items():
        print(
            f"{backend:<11} {r['signals']:>7} {r['latency_median_ms']:>20.1f} ms {r['latency_p99_ms']:>5.1f} ms"
            f" {r['ack_median_ms']:>8.1f} ms {r['ack_p99_ms']:>5.1f} ms {r['row_read_median_ms']:>6.2f} ms"
        )
    out = Path(__file__).parent / "results" / "signals.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

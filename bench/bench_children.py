"""Children: a `map` of N child executions (each one `function` step) against a plain
`map` of N `function` items, on PostgreSQL with 2 `cerebelum worker` processes (issue 13).

    .venv/bin/python bench/bench_children.py [--children 1000] [--concurrency 50] [--only sqlite|postgresql]

Set-up per backend (PostgreSQL: a fresh database `cerebelum_bench_children_<pid>` made
from $CEREBELUM_BENCH_PG, else $CEREBELUM_TEST_PG, else postgresql://postgres@127.0.0.1:5432/test,
dropped at the end; SQLite: a file in a temporary directory). Two workers
(`--concurrency 8` each) run; this process only enqueues and waits.

Measured, one after the other on the same workers:
- `plain`: a parent whose `map` runs N `function` items (max_concurrency C);
- `children`: a parent whose `map` runs N `workflow` items (max_concurrency C), each child
  a workflow of one `function` step: N more executions, each with its own log.
Both from `execute` to the parent's `execution_completed`, wall clock. Reported: items/s
of each, the ratio of the two times, and the fixed cost of a child over a plain item
((children - plain) / N). The machine's two cores are shared with PostgreSQL and the
workers, so the figures are noisy: compare runs made close together.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cerebelum

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf.common import scratch_postgres

CLI = Path(sys.executable).parent / "cerebelum"
HANDLERS = """
import cerebelum


@cerebelum.handler("step")
def step(ctx):
    return ctx.data
"""


def definitions(concurrency: int) -> list[dict[str, Any]]:
    leaf = {"name": "leaf", "entrypoint": "s", "nodes": {"s": {"type": "function", "config": {"handler": "step"}}}}

    def parent(name: str, item: dict[str, Any]) -> dict[str, Any]:
        mapped = {"type": "map", "config": {"items": "input", "max_concurrency": concurrency, "node": item}}
        return {"name": name, "entrypoint": "each", "nodes": {"each": mapped}}

    plain = parent("plain", {"type": "function", "config": {"handler": "step"}})
    children = parent("children", {"type": "workflow", "config": {"workflow": "leaf"}})
    return [leaf, plain, children]


def timed(engine: cerebelum.Engine, name: str, count: int) -> float:
    started = time.perf_counter()
    execution = engine.execute(name, list(range(count)))
    done = engine.wait(execution.id, timeout=3600)
    elapsed = time.perf_counter() - started
    assert done.status == "completed", done.error
    assert done.output == list(range(count))
    return elapsed


def run(url: str, count: int, concurrency: int, workdir: Path) -> dict[str, float]:
    (workdir / "h.py").write_text(HANDLERS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    with cerebelum.Engine(url, workers=0, handlers=cerebelum.HandlerRegistry()) as engine:
        for doc in definitions(concurrency):
            engine.create_workflow(doc)
        command = [str(CLI), "worker", "--db", url, "--handlers", "h.py", "--concurrency", "8", "--poll-interval", "0.2"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        workers = [subprocess.Popen(command, cwd=workdir, env=env, **quiet) for _ in range(2)]
        try:
            timed(engine, "plain", 20)  # warm-up: workers started, definitions compiled
            timed(engine, "children", 20)
            plain = timed(engine, "plain", count)
            children = timed(engine, "children", count)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.communicate(timeout=60)
    return {
        "items": count,
        "plain_s": plain,
        "children_s": children,
        "plain_items_per_s": count / plain,
        "children_per_s": count / children,
        "ratio": children / plain,
        "child_fixed_cost_ms": (children - plain) / count * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default="postgresql")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only == "sqlite":
            results["sqlite"] = run(f"sqlite:///{work / 'bench.db'}", args.children, args.concurrency, work)
        else:
            with scratch_postgres("cerebelum_bench_children") as url:
                results["postgresql"] = run(url, args.children, args.concurrency, work)
    head = f"{'backend':<11} {'items':>6} {'plain map':>10} {'children':>10} {'plain/s':>8} {'children/s':>11}"
    print(f"{head} {'ratio':>6} {'child cost':>11}")
    for backend, r in results.items():
        print(
            f"{backend:<11} {r['items']:>6} {r['plain_s']:>8.2f} s {r['children_s']:>8.2f} s {r['plain_items_per_s']:>8.0f}"
            f" {r['children_per_s']:>11.0f} {r['ratio']:>5.1f}x {r['child_fixed_cost_ms']:>8.2f} ms"
        )
    out = Path(__file__).parent / "results" / "children.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

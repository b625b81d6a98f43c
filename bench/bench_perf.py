"""The performance suite: Cerebelum against DBOS Transact and against the database's floor.

    .venv/bin/python bench/bench_perf.py [--quick] [--repeat N] [--only sqlite|postgresql]

For SQLite and PostgreSQL (the server at $CEREBELUM_BENCH_PG, else $CEREBELUM_TEST_PG,
else postgresql://postgres@127.0.0.1:5432/test, used only to create and drop databases):

- W1 latency: a 10-step no-op workflow, executions one after another; the 1-step one is
  run alternately with it, and the line through the two gives ms per step (its slope)
  and ms fixed per execution (its intercept);
- W2 throughput: executions of the 10-step workflow with 16 and 64 in flight;
- W3 fan-out: one `map` over many items, max_concurrency 50 (Cerebelum only);
- W4 the floor: one single-row INSERT+COMMIT per step, bare driver, 1 and 16 connections;
- the peer: DBOS Transact running W1 and W2 on the same server.

Every measurement runs in a fresh child process on a fresh database (a new SQLite file, a
new PostgreSQL database), in rounds that interleave the systems (cerebelum, dbos, floor,
cerebelum, ...). The table shows the median over the rounds and the ratios; the JSON
(bench/results/perf.json) has every sample. Method and caveats: docs/performance.md.
Exit status 0, or 1 if any measurement failed or a run did not do what it claims.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ADMIN = os.environ.get("CEREBELUM_BENCH_PG") or os.environ.get("CEREBELUM_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def child_main(raw: str) -> int:
    """One measurement, in this (child) process: print its result line, or fail."""
    from perf.common import BenchDefect, Sizes, emit

    spec = json.loads(raw)
    sizes = Sizes(**spec["sizes"])
    try:
        if spec["system"] == "cerebelum":
            from perf import cerebelum_side as side
        elif spec["system"] == "dbos":
            from perf import dbos_side as side  # type: ignore[no-redef]
        else:
            from perf import floor_side as side  # type: ignore[no-redef]
        result = side.run(spec, sizes)
    except BenchDefect as exc:
        print(f"DEFECT: {exc}", file=sys.stderr)
        return 3
    except Exception:
        traceback.print_exc()
        return 1
    emit(result)
    return 0


# -- the plan -----------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """One round, in order: (key, system, spec extras). Systems interleave within each workload."""
    from perf.common import FLOOR_CONNECTIONS, W2_CONCURRENCY

    steps: list[tuple[str, str, dict[str, Any]]] = []
    if "w1" in args.workloads:
        steps += [("w1", "cerebelum", {"workload": "w1"}), ("w1", "dbos", {"workload": "w1"})]
    if "floor" in args.workloads:
        steps.append(("floor1", "floor", {"workload": "floor", "connections": 1}))
    for concurrency in W2_CONCURRENCY if "w2" in args.workloads else ():
        key = f"w2c{concurrency}"
        steps += [(key, system, {"workload": "w2", "concurrency": concurrency}) for system in ("cerebelum", "dbos")]
        if "floor" in args.workloads and concurrency == W2_CONCURRENCY[0]:
            steps.append((f"floor{FLOOR_CONNECTIONS}", "floor", {"workload": "floor", "connections": FLOOR_CONNECTIONS}))
    if "floor" in args.workloads and "w2" not in args.workloads:
        steps.append((f"floor{FLOOR_CONNECTIONS}", "floor", {"workload": "floor", "connections": FLOOR_CONNECTIONS}))
    if "w3" in args.workloads:
        steps.append(("w3", "cerebelum", {"workload": "w3"}))
    return [step for step in steps if step[1] in args.systems]


# -- databases ----------------------------------------------------------------------------


def admin() -> Any:
    """A connection to the admin database, only to create and drop the bench's own databases."""
    import psycopg

    return psycopg.connect(ADMIN, autocommit=True, connect_timeout=10)


class Databases:
    """A fresh database per measurement; everything made here is removed at the end."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.tmp = Path(tempfile.mkdtemp(prefix="cerebelum-perf-"))
        self.pg_names: set[str] = set()
        self.count = 0

    def fresh(self, system: str, backend: str) -> dict[str, Any]:
        self.count += 1
        if backend == "sqlite":
            path = self.tmp / f"{self.count:03d}-{system}.db"
            return {"url": f"sqlite:///{path}", "path": str(path)}
        from psycopg import sql

        name = f"{system}_bench_{os.getpid()}"
        with admin() as server:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.pg_names.add(name)
        return {"url": ADMIN.rsplit("/", 1)[0] + "/" + name, "database": name, "admin_url": ADMIN}

    def done_with(self, spec: dict[str, Any]) -> None:
        """SQLite files go as soon as they are measured (PostgreSQL ones are reused by name)."""
        if "path" in spec:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(spec["path"] + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not self.pg_names:
            return
        from psycopg import sql

        try:
            with admin() as server:
                for name in sorted(self.pg_names):
                    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except Exception as exc:  # do not hide why the run stopped; say what is left behind
            print(f"could not drop {', '.join(sorted(self.pg_names))}: {exc}", file=sys.stderr)


@contextmanager
def databases(backends: list[str]) -> Iterator[Databases]:
    made = Databases(backends)
    try:
        yield made
    finally:
        made.close()


def sqlite_pragmas(tmp: Path) -> dict[str, Any]:
    from perf.floor_side import engine_sqlite_pragmas

    probe = tmp / "probe.db"
    try:
        return engine_sqlite_pragmas(str(probe))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(probe) + suffix).unlink(missing_ok=True)


# -- running children ---------------------------------------------------------------------


def run_child(spec: dict[str, Any], log: Path, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one measurement in a child process; its result, or None and why."""
    from perf.common import RESULT_PREFIX

    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired as exc:
        log.write_text(f"{command}\n--- timed out after {timeout} s\n{exc.stdout or ''}\n{exc.stderr or ''}")
        return None, f"timed out after {timeout:.0f} s"
    log.write_text(
        f"{' '.join(command[:3])} ...\n--- exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX) and done.returncode == 0:
            return json.loads(line[len(RESULT_PREFIX) :]), ""
    tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
    return None, f"exit {done.returncode}: " + " | ".join(tail)


def summary(key: str, system: str, result: dict[str, Any]) -> str:
    if key == "w1":
        return f"{result['ms_per_step']:.3f} ms/step + {result['ms_fixed']:.2f} ms/execution, {result['steps_per_s']:.0f} steps/s"
    if key.startswith("w2"):
        rate = f"{result['steps_per_s']:.0f} steps/s, {result['executions_per_s']:.1f} executions/s"
        return f"{rate}, RSS {result['rss_mib_end']:.0f} MiB"
    if key == "w3":
        return f"{result['items_per_s']:.0f} items/s"
    return f"{result['commits_per_s']:.0f} INSERT+COMMIT/s ({result['ms_per_commit']:.3f} ms)"


# -- the machine --------------------------------------------------------------------------


def machine(backends: list[str], pragmas: dict[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_pragmas": pragmas,
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
        meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(meminfo[1]) / 1024 / 1024, 1)
        info["load_average_at_start"] = os.getloadavg()
    except (OSError, IndexError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for package in ("cerebelum", "dbos", "sqlalchemy", "psycopg"):
        try:
            info[f"{package}_version"] = version(package)
        except PackageNotFoundError:
            info[f"{package}_version"] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT, check=False)
        info["git"] = commit.stdout.strip() + ("+dirty src" if dirty.stdout.strip() else "")
    except OSError:
        info["git"] = None
    if "postgresql" in backends:
        with admin() as server:
            info["postgresql"] = server.execute("SHOW server_version").fetchone()[0]
            info["postgresql_settings"] = {
                name: server.execute(f"SHOW {name}").fetchone()[0]
                for name in ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_connections")
            }
    return info


def notes(info: dict[str, Any]) -> dict[str, str]:
    pragmas = info.get("sqlite_pragmas") or {}
    settings = info.get("postgresql_settings") or {}
    return {
        "sqlite": f"SQLite {info['sqlite']}, journal_mode={pragmas.get('journal_mode')}, "
        f"synchronous={pragmas.get('synchronous')} "
        "(the engine's, read from its own connection; DBOS and the floor use the same)",
        "postgresql": f"PostgreSQL {info.get('postgresql')} on this machine, "
        f"synchronous_commit={settings.get('synchronous_commit')}, "
        f"fsync={settings.get('fsync')}",
    }


# -- main ---------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round unless --repeat (for development)")
    parser.add_argument("--repeat", type=int, default=None, help="rounds; the median is reported (default 3, or 1 with --quick)")
    parser.add_argument("--only", choices=BACKENDS, action="append", help="only this backend (repeatable)")
    parser.add_argument("--workloads", default="w1,w2,w3,floor", help="comma-separated subset of w1,w2,w3,floor")
    parser.add_argument("--systems", default="cerebelum,dbos,floor", help="comma-separated subset of cerebelum,dbos,floor")
    parser.add_argument("--dbos-w2", choices=("threads", "queue"), default="threads", help="how DBOS gets N workflows in flight")
    parser.add_argument("--dbos-pool-size", type=int, default=None, help="DBOS's sys_db_pool_size (default: DBOS's own, 20)")
    parser.add_argument(
        "--dbos-sqlite-pragmas",
        choices=("same", "default"),
        default="same",
        help="DBOS on SQLite: the engine's WAL settings, or its own",
    )
    parser.add_argument(
        "--handler", choices=("sync", "async"), default="sync", help="Cerebelum's no-op handler: def or async def"
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH / "results" / "perf.json", help="where to write every sample and the table"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workloads = {w.strip() for w in args.workloads.split(",") if w.strip()}
    args.systems = {s.strip() for s in args.systems.split(",") if s.strip()}
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child_main(args.child)
    from perf import report
    from perf.common import SIZES, sizes_dict

    sizes = SIZES["quick" if args.quick else "full"]
    backends = list(args.only or BACKENDS)
    if "postgresql" in backends:
        try:
            with admin() as server:
                rows = server.execute("SELECT datname FROM pg_database WHERE datname ~ '^(cerebelum|dbos|floor)_bench_[0-9]+$'")
                stale = [row[0] for row in rows.fetchall()]
        except Exception as exc:
            print(
                f"PostgreSQL is not reachable at {ADMIN} ({exc}); set CEREBELUM_BENCH_PG, or use --only sqlite", file=sys.stderr
            )
            return 2
        if stale:  # left by a run that could not clean up (killed, or the server was down at the end)
            print(f"note: databases from earlier runs are still there: {', '.join(stale)} (DROP DATABASE them)", file=sys.stderr)
    steps = plan(args)
    options = {
        "dbos_w2": args.dbos_w2,
        "dbos_pool_size": args.dbos_pool_size,
        "dbos_sqlite_pragmas": args.dbos_sqlite_pragmas,
        "handler": args.handler,
        "timeout": args.timeout,
    }
    logs = args.json.parent / "perf-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    samples: report.Samples = {backend: {} for backend in backends}
    failures: list[str] = []
    began = time.monotonic()
    with databases(backends) as made:
        pragmas = sqlite_pragmas(made.tmp) if "sqlite" in backends else None
        info = machine(backends, pragmas)
        print(
            f"bench_perf: {len(steps) * len(backends)} measurements x {args.repeat} round(s), sizes {sizes_dict(sizes)}; "
            f"children's output in {logs}",
            file=sys.stderr,
        )
        for round_no in range(1, args.repeat + 1):
            for backend in backends:
                for key, system, extra in steps:
                    label = f"[{round_no}/{args.repeat}] {backend:<10} {key:<7} {system:<9}"
                    name = f"r{round_no}-{backend}-{key}-{system}"
                    common = {"system": system, "backend": backend, "sizes": sizes_dict(sizes), "sqlite_pragmas": pragmas}
                    started = time.monotonic()
                    try:
                        spec = {**common, **options, **extra, **made.fresh(system, backend)}
                    except Exception as exc:  # the server went away: the next measurements may still run
                        result, why = None, f"no fresh database: {exc}"
                    else:
                        result, why = run_child(spec, logs / f"{name}.log", args.timeout)
                        made.done_with(spec)
                    took = time.monotonic() - started
                    if result is None:
                        failures.append(f"{name}: {why}")
                        print(f"{label} FAILED ({why})", file=sys.stderr)
                        continue
                    result.update(round=round_no, backend=backend, key=key, system=system, wall_s=took)
                    samples[backend].setdefault(key, {}).setdefault(system, []).append(result)
                    print(f"{label} {summary(key, system, result)}  ({took:.0f} s)", file=sys.stderr)
    info["load_average_at_end"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - began)
    built = report.build(samples)
    text = report.table(built, samples, notes(info))
    what = describe(sizes, args)
    print(what)
    print(text)
    print("\n".join(report.statement_lines(samples)))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
    document = {
        "meta": {
            **info,
            "sizes": sizes_dict(sizes),
            "repeat": args.repeat,
            "options": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items() if k not in ("child", "json")},
            "what": what,
        },
        "rows": built,
        "samples": [
            run for by_key in samples.values() for by_system in by_key.values() for runs in by_system.values() for run in runs
        ],
        "failures": failures,
        "table": text,
    }
    document["meta"]["options"]["json"] = str(args.json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=str))
    print(f"\nJSON: {args.json}  ({info['duration_s']} s; load average {info['load_average_at_end'][0]:.1f} at the end)")
    return 1 if failures else 0


def describe(sizes: Any, args: argparse.Namespace) -> str:
    from perf.common import FLOOR_CONNECTIONS, STEPS, W3_CONCURRENCY

    dbos_w2 = (
        "N threads each calling the workflow function (N in flight, creation included)"
        if args.dbos_w2 == "threads"
        else "a DBOS queue with worker_concurrency=N, polling every 10 ms, all enqueued at once"
    )
    return "\n".join(
        [
            f"What is measured (median of {args.repeat} round(s); each measurement a fresh process on a fresh database):",
            f"  W1: {sizes.w1} executions of the {STEPS}-step no-op chain one after another, alternating in blocks of 10 with "
            f"{sizes.w1} of a 1-step chain; ms/step is the slope between the two, ms fixed the intercept; "
            f"Cerebelum Engine.run, DBOS a direct call of the @DBOS.workflow.",
            f"  W2: {sizes.w2} executions of the {STEPS}-step chain, wall time from the first start to the last completion. "
            f"Cerebelum: started (enqueued) N at a time, then an in-process pool of N (Engine.work_async) drains them. "
            f"DBOS: {dbos_w2}. CPU = process CPU time of that process / steps; server CPU = the database's backends.",
            f"  W3: one map over {sizes.w3} items, max_concurrency {W3_CONCURRENCY} (Engine.run).",
            f"  Floor: {sizes.floor_one} single-row INSERT+COMMITs from 1 connection, "
            f"{sizes.floor_many} from {FLOOR_CONNECTIONS}.",
            "  Every execution is checked afterwards: status completed, one node_completed (DBOS: one recorded step) per step.",
            "  C/DBOS and C/floor are Cerebelum's value divided by the other's, in the row's unit; "
            "'±' is half the range over the rounds."
            f" Cerebelum handler: {args.handler} def.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

"""Helpers of the fault tests: real `cerebelum worker` processes over real
databases, killed, stopped and restarted while they work.

A Cluster gives a test its own handlers file (every handler
invocation is appended, fsync'd, as one JSON line to `records.jsonl`, so the
test can count runs across processes), a reading/enqueueing Engine
(`workers=0`) and `spawn()` for worker processes. Every worker it spawned is
terminated at teardown (SIGTERM, then SIGKILL), whatever the test did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import check_log, of_type

import cerebelum

CLI = Path(sys.executable).parent / "cerebelum"
LEASE_TTL = 2.0
POLL = 0.1

HANDLERS = """
import json
import os
import time

import cerebelum

RECORDS = {records!r}
MARKERS = {markers!r}


def _record(ctx, name):
    line = json.dumps({{
        "execution": ctx.execution_id, "node": ctx.node_id, "attempt": ctx.attempt,
        "key": ctx.idempotency_key, "pid": os.getpid(), "handler": name, "at": time.time(),
    }}) + "\\n"
    fd = os.open(RECORDS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _input(ctx, key, default):
    return ctx.input.get(key, default) if isinstance(ctx.input, dict) else default


@cerebelum.handler("step", intercept=False)
def step(ctx):
    _record(ctx, "step")
    pause = _input(ctx, "sleep", 0)
    if pause:
        time.sleep(pause)
    return {{"node": ctx.node_id}}


@cerebelum.handler("hang_once", intercept=False)
def hang_once(ctx):
    # The first run of a node run writes a marker (with its pid) and hangs, so
    # the test can kill the worker in the middle of the node; later runs return.
    _record(ctx, "hang_once")
    marker = os.path.join(MARKERS, ctx.idempotency_key.replace("/", "_"))
    if not os.path.exists(marker):
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
            f.flush()
            os.fsync(f.fileno())
        os.rename(marker + ".tmp", marker)
        time.sleep(_input(ctx, "hang", 30))
    return {{"node": ctx.node_id, "pid": os.getpid()}}
"""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `predicate` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Cluster:
    """Worker processes on one database, a handlers file, and an Engine to look."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.records_path = tmp / "records.jsonl"
        self.markers = tmp / "markers"
        self.markers.mkdir()
        self.handlers = tmp / "fault_handlers.py"
        self.handlers.write_text(HANDLERS.format(records=str(self.records_path), markers=str(self.markers)))
        self.engine = cerebelum.Engine(url, workers=0, handlers=cerebelum.HandlerRegistry())  # migrates first
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []

    # -- workers --------------------------------------------------------------

    def spawn(
        self, concurrency: int = 4, lease_ttl: float = LEASE_TTL, wait_ready: bool = True, code_version: str | None = None
    ) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        out = open(self.tmp / f"worker{n}.out", "wb")  # noqa: SIM115 (closed at teardown)
        err = open(self.tmp / f"worker{n}.err", "wb")  # noqa: SIM115
        self._files += [out, err]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
        # fmt: off
        version = ["--code-version", code_version] if code_version else []
        args = [
            str(CLI), *version, "worker", "--db", self.url, "--handlers", str(self.handlers),
            "--concurrency", str(concurrency), "--lease-ttl", str(lease_ttl), "--poll-interval", str(POLL),
        ]
        # fmt: on
        proc = subprocess.Popen(args, cwd=self.tmp, env=env, stdout=out, stderr=err)
        proc.log_path = self.tmp / f"worker{n}.err"  # type: ignore[attr-defined]
        self.procs.append(proc)
        if wait_ready:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Until the worker announced itself (its pool is about to claim)."""

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {proc.pid} exited with {proc.returncode}:\n{self.log(proc)}")
            return " at a time on " in self.log(proc)

        wait_until(ready, timeout, f"worker {proc.pid} to start")

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def logs(self) -> str:
        return "\n".join(f"--- worker pid {p.pid} (exit {p.returncode})\n{self.log(p)[-3000:]}" for p in self.procs)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> int:
        """SIGTERM (graceful), then SIGKILL if it has not exited after `grace` seconds."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def close(self) -> None:
        live = [p for p in self.procs if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for f in self._files:
            f.close()
        self.engine.close()

    # -- what happened ----------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        return [json.loads(line) for line in self.records_path.read_text().splitlines() if line]

    def runs(self, execution_id: str) -> dict[str, list[dict[str, Any]]]:
        """Handler invocations of one execution, by node path."""
        by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in self.records():
            if record["execution"] == execution_id:
                by_node[record["node"]].append(record)
        return by_node

    def wait_terminal(self, ids: list[str], timeout: float) -> list[cerebelum.Execution]:
        def done() -> list[cerebelum.Execution] | None:
            rows = [self.engine.status(i) for i in ids]
            return rows if all(r.is_terminal for r in rows) else None

        try:
            return wait_until(done, timeout, f"{len(ids)} executions to end", every=0.2)
        except AssertionError as exc:
            statuses = Counter(self.engine.status(i).status for i in ids)
            raise AssertionError(f"{exc}; statuses {dict(statuses)}\n{self.logs()}") from None

    def check_completed_once(self, execution: cerebelum.Execution) -> list[cerebelum.Event]:
        """The log's invariants, and exactly one node_completed per node path."""
        log = check_log(self.engine, execution)
        completed = Counter(e.node_id for e in of_type(log, "node_completed"))
        assert all(n == 1 for n in completed.values()), (execution.id, completed)
        assert len({e.id for e in log}) == len(log)
        return log

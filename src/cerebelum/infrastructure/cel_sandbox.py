"""Bounded evaluation of CEL expressions in sandbox processes (docs/limits.md).

The CEL library evaluates in Rust while holding the GIL and has no cost
limit, so an expensive expression evaluated in-process freezes every thread
(health checks, lease renewal, signal handling) until it ends, if it ends.
Expressions that are not plain (see `expressions.is_plain`) are therefore
evaluated here, in a small pool of child processes:

- each evaluation arms `ITIMER_PROF` in the child with the CPU budget
  (`expression_cpu_ms`); SIGPROF's default action ends the process, so the
  kernel stops the evaluation when the budget is spent, in Rust or not;
- the child's address space is capped (`RLIMIT_AS`, `expression_memory_mb`
  over what it uses when idle): an allocation beyond it aborts the child;
- the parent waits on a pipe (the GIL is released meanwhile) with a
  wall-clock deadline too (a starved child cannot hold a caller forever);
- a result larger than `MAX_RESULT_BYTES` is refused.

Any of these is an `ExpressionLimit`; the child is replaced. Requests and
answers are single JSON lines. A child whose parent dies reads EOF and
exits. Results are cached per (expression, variables) so that the
orchestrator, which re-decides often, does not pay the round trip (or the
budget, for a poison expression) more than once per distinct input.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cerebelum.domain.errors import ExpressionError, ExpressionLimit
from cerebelum.domain.limits import Limits
from cerebelum.infrastructure.cel_child import EXIT_NO_MEMORY

CHILD = str(Path(__file__).with_name("cel_child.py"))
MAX_RESULT_BYTES = 16 * 1024 * 1024
MAX_SANDBOXES = 2  # child processes per engine process
READY_TIMEOUT = 30.0  # a child's start (interpreter + cel import) on a loaded machine
CACHE_SIZE = 512
CACHED_REQUEST_BYTES = 64 * 1024


def wall_deadline(limits: Limits) -> float:
    """How long a caller waits for one evaluation: the CPU budget plus slack
    for a busy machine. The orchestrator's decisions run on the runner's event
    loop (the server's, under `serve`), which waits this long at most: with the
    default budget, 0.3 s, so health checks stay under a second."""
    return min(max(0.3, 2 * limits.expression_cpu_ms / 1000), 30.0)


def _extension_path() -> str:
    """The file of the library's compiled module (the child loads it alone)."""
    import cel.cel

    return str(cel.cel.__file__)


class _Child:
    """One sandbox process, used by one caller at a time."""

    def __init__(self, limits: Limits) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", CHILD, str(limits.expression_memory_mb), _extension_path()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # a terminal's Ctrl-C goes to the engine, which ends the child
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.out = self.process.stdout.fileno()
        self.buffer = b""
        self.ready = False

    def read_line(self, deadline: float) -> bytes | None:
        """The next line, or None if the child ended or the deadline passed."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.out], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(self.out, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_RESULT_BYTES + 1024:
                return b""
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def evaluate(self, request: bytes, limits: Limits) -> dict[str, Any]:
        if not self.ready:
            if self.read_line(time.monotonic() + READY_TIMEOUT) != b"ready":
                raise _Died("the expression sandbox did not start")
            self.ready = True
        try:
            self.stdin.write(request)
            self.stdin.flush()
        except OSError:
            raise _Died("the expression sandbox is gone") from None
        line = self.read_line(time.monotonic() + wall_deadline(limits))
        if line is None or line == b"":
            raise _Died(self.reason(line, limits))
        answer: dict[str, Any] = json.loads(line)
        return answer

    def reason(self, line: bytes | None, limits: Limits) -> str:
        if line == b"":
            self.kill()
            return f"its result is larger than {MAX_RESULT_BYTES // (1024 * 1024)} MB"
        try:
            code = self.process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            self.kill()
            return f"it took longer than {wall_deadline(limits):g} s"
        if code == -signal.SIGPROF:
            return f"it used more than {limits.expression_cpu_ms} ms of CPU time"
        if code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS, EXIT_NO_MEMORY):
            return f"it needed more than {limits.expression_memory_mb} MB of memory"
        return f"the sandbox evaluating it ended (exit status {code})"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()  # EOF: the child exits
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            if self.process.stdout is not None:
                self.process.stdout.close()


class _Died(Exception):
    pass


class SandboxPool:
    """Up to MAX_SANDBOXES children, created on demand and reused."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Condition()
        self.idle: list[_Child] = []
        self.count = 0
        self.cache: OrderedDict[bytes, dict[str, Any]] = OrderedDict()

    def warm_up(self, limits: Limits) -> None:
        with self.lock:
            if self.count == 0:
                self.idle.append(_Child(limits))
                self.count += 1

    def acquire(self, limits: Limits) -> _Child:
        with self.lock:
            while not self.idle and self.count >= MAX_SANDBOXES:
                self.lock.wait()
            if self.idle:
                return self.idle.pop()
            self.count += 1
        try:
            return _Child(limits)
        except BaseException:
            with self.lock:
                self.count -= 1
                self.lock.notify()
            raise

    def release(self, child: _Child | None) -> None:
        with self.lock:
            if child is None:
                self.count -= 1
            else:
                self.idle.append(child)
            self.lock.notify()

    def evaluate(self, source: str, variables: dict[str, Any], limits: Limits) -> Any:
        request = (
            json.dumps({"source": source, "variables": variables, "cpu_ms": limits.expression_cpu_ms}, allow_nan=False) + "\n"
        ).encode()
        with self.lock:
            answer = self.cache.get(request)
            if answer is not None:
                self.cache.move_to_end(request)
        if answer is None:
            answer = self.run(request, limits)
            if len(request) <= CACHED_REQUEST_BYTES:
                with self.lock:
                    self.cache[request] = answer
                    if len(self.cache) > CACHE_SIZE:
                        self.cache.popitem(last=False)
        if "error" in answer:
            raise ExpressionError(answer["error"])
        if "limit" in answer:
            raise ExpressionLimit(answer["limit"])
        return answer["value"]

    def run(self, request: bytes, limits: Limits) -> dict[str, Any]:
        child = self.acquire(limits)
        try:
            answer = child.evaluate(request, limits)
        except _Died as died:
            child.kill()
            try:  # its replacement starts now, while the caller carries on
                self.release(_Child(limits))
            except OSError:
                self.release(None)
            return {"limit": str(died)}
        except BaseException:
            child.kill()
            self.release(None)
            raise
        self.release(child)
        return answer

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
            self.count -= len(idle)
        for child in idle:
            child.close()


_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def _current_pool() -> SandboxPool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():  # a forked process gets its own children
            _pool = SandboxPool()
        return _pool


def warm_up(limits: Limits) -> None:
    """Start one sandbox process now, so the first evaluation does not wait for it."""
    _current_pool().warm_up(limits)


def evaluate_in_sandbox(source: str, variables: dict[str, Any], limits: Limits) -> Any:
    """Evaluate `source` in a sandbox; raise ExpressionLimit when it exceeds its budget."""
    try:
        answer = _current_pool().evaluate(source, variables, limits)
    except ExpressionLimit as exc:
        raise ExpressionLimit(f"{source!r} exceeded its cost bound: {exc}") from None
    return answer


def shutdown() -> None:
    """Close the idle sandboxes (they also exit on their own when this process ends)."""
    with _pool_lock:
        pool = _pool
    if pool is not None and pool.pid == os.getpid():
        pool.close()

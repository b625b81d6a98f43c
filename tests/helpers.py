"""Small builders and invariant checks shared by the test tiers."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

import cerebelum
from cerebelum.domain.state import fold

T = TypeVar("T")


def fn(handler: str, **config: Any) -> dict[str, Any]:
    return {"type": "function", "config": {"handler": handler, **config}}


def definition(name: str, nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    entry = extra.pop("entrypoint", next(iter(nodes)))
    return {"name": name, "entrypoint": entry, "nodes": nodes, "edges": edges or [], **extra}


def chain(*ids: str) -> list[dict[str, Any]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(ids)]


def check_log(engine: cerebelum.Engine, execution: cerebelum.Execution) -> list[cerebelum.Event]:
    """The log's invariants: contiguous from 0, started first, terminal last, folds to the row."""
    log = engine.events(execution.id)
    assert [e.sequence for e in log] == list(range(len(log)))
    assert log[0].type == "execution_started"
    if execution.is_terminal:
        assert log[-1].type in ("execution_completed", "execution_failed")
        assert sum(e.type in ("execution_completed", "execution_failed") for e in log) == 1
    state = fold(log)
    row = engine.status(execution.id)
    assert (state.status, state.output, state.error) == (row.status, row.output, row.error)
    assert (state.started_at, state.completed_at, state.sequence) == (row.started_at, row.completed_at, row.last_sequence)
    return log


def in_threads(call: Callable[[], T], count: int) -> list[T]:
    """`call()` from `count` threads at once; every result, or the first error raised."""
    results: list[T] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def of_type(log: list[cerebelum.Event], kind: str, node: str | None = None) -> list[cerebelum.Event]:
    return [e for e in log if e.type == kind and (node is None or e.node_id == node)]


def wait_until_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until a `cerebelum serve` started as `process` answers GET /healthz (it must not exit first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "the server did not come up"
        time.sleep(0.1)

"""The CLI's `signal`, `fork` and `--timeout` (interaction spec sections 1, 3 and 8),
each through the installed entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import empty_pg

import cerebelum

CLI = Path(sys.executable).parent / "cerebelum"

HANDLERS = """
import cerebelum


@cerebelum.handler("publish")
def publish(ctx):
    return {"published": ctx.data}


@cerebelum.handler("boom")
def boom(ctx):
    raise RuntimeError("kaboom")
"""

APPROVAL: dict[str, Any] = {
    "name": "approval",
    "entrypoint": "approve",
    "nodes": {
        "approve": {"type": "wait", "config": {"signal": "approve"}},
        "publish": {"type": "function", "config": {"handler": "publish"}},
    },
    "edges": [{"from": "approve", "to": "publish"}],
}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "h.py").write_text(HANDLERS)
    (tmp_path / "approval.json").write_text(json.dumps(APPROVAL))
    (tmp_path / "boom.json").write_text(
        json.dumps({"name": "boom", "entrypoint": "b", "nodes": {"b": {"type": "function", "config": {"handler": "boom"}}}})
    )
    return tmp_path


def test_run_waits_for_a_signal_sent_from_another_process(work: Path, sql_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    run = subprocess.Popen(
        [str(CLI), "--db", sql_url, "run", "approval.json", "--handlers", "h.py", "--json"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with cerebelum.Engine(sql_url, workers=0) as engine:
            deadline = time.monotonic() + 30
            while not (listed := engine.executions("approval")) or listed[0].last_sequence < 1:
                assert time.monotonic() < deadline and run.poll() is None, "the run never reached its wait"
                time.sleep(0.05)
            execution_id = listed[0].id
        sent = cli(work, "--db", sql_url, "signal", execution_id, "approve", "--payload", '{"ok": true}', "--json")
        assert sent.returncode == 0, sent.stderr
        answer = json.loads(sent.stdout)
        assert answer["execution_id"] == execution_id and answer["signal"] == "approve" and answer["sequence"] >= 2
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert json.loads(out)["output"] == {"published": {"ok": True}}
    again = cli(work, "--db", sql_url, "signal", execution_id, "approve")
    assert again.returncode == 2 and "completed" in again.stderr and "Traceback" not in again.stderr


def test_signal_fork_and_timeout_errors_and_answers(work: Path) -> None:
    db = f"sqlite:///{work / 'c.db'}"
    unknown = cli(work, "--db", db, "signal", "exec-nope", "approve")
    assert unknown.returncode == 2 and "unknown execution" in unknown.stderr
    bad = cli(work, "--db", db, "signal", "exec-nope", "approve", "--payload", "{not json")
    assert bad.returncode == 2 and "--payload" in bad.stderr
    timed = cli(work, "--db", db, "run", "approval.json", "--handlers", "h.py", "--timeout", "0.3", "--json")
    assert timed.returncode == 1
    assert json.loads(timed.stdout)["error"]["kind"] == "timeout"
    failed = cli(work, "--db", db, "run", "boom.json", "--handlers", "h.py", "--json")
    assert failed.returncode == 1
    failed_id = json.loads(failed.stdout)["execution_id"]
    forked = cli(work, "--db", db, "fork", failed_id, "--json")
    assert forked.returncode == 0, forked.stderr
    fork = json.loads(forked.stdout)
    assert fork["forked_from"]["execution_id"] == failed_id and fork["execution_id"] != failed_id
    status = cli(work, "--db", db, "status", fork["execution_id"])
    assert f"forked_from: {failed_id}" in status.stdout
    outside = cli(work, "--db", db, "fork", failed_id, "--at", "999")
    assert outside.returncode == 2 and "outside the log" in outside.stderr


def test_a_parked_execution_wakes_in_another_process_when_signalled(work: Path, pg_url: str) -> None:
    """PostgreSQL: the signal's own transaction appends it and NOTIFYs; a worker process
    polling only every 30 s must take the execution on at once, so only the notice can
    have woken it (a generous 10 s bound: this checks the mechanism, not its speed)."""
    empty_pg(pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    command = [str(CLI), "worker", "--db", pg_url, "--handlers", "h.py", "--concurrency", "2", "--poll-interval", "30"]
    worker = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with cerebelum.Engine(pg_url, workers=0) as engine:
            engine.create_workflow(APPROVAL)
            execution = engine.execute("approval", {})
            deadline = time.monotonic() + 30
            while not (engine.state_at(execution.id).get("waiting_for_signals") and engine.store.queue.counts()["leased"] == 0):
                assert worker.poll() is None, worker.communicate()[1]
                assert time.monotonic() < deadline, "the execution never parked at its wait"
                time.sleep(0.05)
            sent = time.monotonic()
            sequence = engine.signal(execution.id, "approve", {"ok": True})
            done = engine.wait(execution.id, timeout=25)
            assert done.status == "completed", done.error
            assert time.monotonic() - sent < 10, "woken by the worker's 30 s poll, not by the notice"
            assert engine.events(execution.id)[sequence].type == "signal_received"
    finally:
        worker.terminate()
        worker.communicate(timeout=30)

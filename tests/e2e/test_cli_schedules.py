"""`cerebelum schedules ...` through the installed entry point, and one schedule
fired in real time by a `cerebelum worker` process (interaction spec section 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.e2e.test_cli import CLI, cli, write_json

HANDLERS = """
import cerebelum


@cerebelum.handler("report")
def report(ctx):
    return {"day": ctx.data.get("day")}
"""
FLOW = {"name": "report", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "report"}}}, "edges": []}


def prepare(path: Path, url: str) -> tuple[Path, list[str]]:
    (path / "h.py").write_text(HANDLERS)
    write_json(path / "flow.json", FLOW)
    db = ["--db", url]
    created = cli(path, *db, "--handlers", "h.py", "start", "flow.json")  # stores the workflow (and one execution)
    assert created.code == 0, created.err
    return path, db


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, list[str]]:
    """SQLite: the commands' behaviour does not depend on the backend (tests/integration covers each)."""
    return prepare(tmp_path, f"sqlite:///{tmp_path / 'cerebelum.db'}")


@pytest.fixture
def shared(tmp_path: Path, sql_url: str) -> tuple[Path, list[str]]:
    return prepare(tmp_path, sql_url)


def test_bad_schedules_exit_2_naming_the_field(work):
    path, db = work
    for args, field in (
        (["--cron", "61 * * * *"], "--cron"),
        (["--cron", "* * * *"], "--cron"),
        (["--cron", "0 * * * *", "--timezone", "Mars/Olympus"], "--timezone"),
        (["--every", "0"], "--every"),
        (["--every", "1.5"], "--every"),
        ([], "--cron"),
    ):
        result = cli(path, "schedules", "create", "s", "--workflow", "report", *args, *db)
        assert result.code == 2 and field in result.err and "Traceback" not in result.err, (args, result.err)
    unknown = cli(path, "schedules", "create", "s", "--workflow", "nope", "--every", "5", *db)
    assert unknown.code == 2 and "--workflow: unknown workflow 'nope'" in unknown.err
    listed = cli(path, "schedules", "list", "--json", *db)
    assert listed.code == 0 and json.loads(listed.out) == {"items": []}


def test_create_list_show_trigger_pause_resume_delete(work):
    path, db = work
    created = cli(path, "schedules", "create", "nightly", "--workflow", "report", "--cron", "0 3 * * *",
                  "--timezone", "Europe/Paris", "--input", '{"day": 4}', "--catchup", "all", "--json", *db)  # fmt: skip
    assert created.code == 0, created.err
    body = json.loads(created.out)
    assert (body["cron"], body["timezone"], body["catchup"], body["overlap"]) == ("0 3 * * *", "Europe/Paris", "all", "skip")
    assert body["next_fire"].endswith(":00:00Z")
    again = cli(path, "schedules", "create", "nightly", "--workflow", "report", "--every", "60", *db)
    assert again.code == 2 and "already exists" in again.err
    listed = cli(path, "schedules", "list", *db)
    assert listed.code == 0 and "nightly" in listed.out and "cron '0 3 * * *' Europe/Paris" in listed.out
    triggered = cli(path, "schedules", "trigger", "nightly", "--json", *db)
    assert triggered.code == 0, triggered.err
    execution = json.loads(triggered.out)
    assert execution["schedule"]["name"] == "nightly" and execution["input"] == {"day": 4}
    status = cli(path, "status", execution["execution_id"], "--json", *db)
    assert json.loads(status.out)["schedule"] == execution["schedule"]
    shown = json.loads(cli(path, "schedules", "show", "nightly", "--json", *db).out)
    assert len(shown["next_fires"]) == 5 and shown["recent"][0]["execution_id"] == execution["execution_id"]
    assert cli(path, "schedules", "pause", "nightly", *db).code == 0
    paused = json.loads(cli(path, "schedules", "show", "nightly", "--json", *db).out)
    assert paused["state"] == "paused" and paused["next_fires"] == []
    text = cli(path, "schedules", "show", "nightly", *db)
    assert "paused" in text.out and "triggered" in text.out
    assert cli(path, "schedules", "resume", "nightly", *db).code == 0
    assert cli(path, "schedules", "delete", "nightly", *db).code == 0
    for action in ("show", "pause", "resume", "delete", "trigger"):
        gone = cli(path, "schedules", action, "nightly", *db)
        assert gone.code == 2 and "unknown schedule 'nightly'" in gone.err, (action, gone.err)


def test_a_worker_process_fires_an_every_second_schedule(shared):
    path, db = shared
    created = cli(path, "schedules", "create", "fast", "--workflow", "report", "--every", "1", "--input", '{"day": 9}', *db)
    assert created.code == 0, created.err
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    worker = subprocess.Popen(
        [str(CLI), *db, "--handlers", "h.py", "worker", "--poll-interval", "0.1"],
        cwd=path, env=base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        done: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(done) < 2:
            time.sleep(0.5)
            shown = json.loads(cli(path, "schedules", "show", "fast", "--json", *db).out)
            done = [t for t in shown["recent"] if t["outcome"] == "started" and t["status"] == "completed"]
        assert len(done) >= 2, shown
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    ticks = [t["tick"] for t in shown["recent"] if t["outcome"] == "started"]
    assert len(ticks) == len(set(ticks))
    first = next(t for t in done)
    status = json.loads(cli(path, "status", str(first["execution_id"]), "--json", *db).out)
    assert status["output"] == {"day": 9} and status["schedule"] == {"name": "fast", "tick": first["tick"]}

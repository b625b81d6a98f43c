"""The real `cerebelum` entry point for retention and portable histories:
`executions list`, `executions purge`, `export`, `import`, `replay --file`
(exit codes 0 / 1 divergence / 2 bad input, as docs/cli.md says).

Each command is a subprocess of a second or so: these run on SQLite only; the
same use cases run on SQLite and PostgreSQL in tests/integration
(test_retention.py, test_histories.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cerebelum

CLI = Path(sys.executable).parent / "cerebelum"
HANDLERS = """
import cerebelum


@cerebelum.handler("roll")
def roll(ctx):
    return {"n": ctx.data.get("n", 0) + ctx.randint(1, 6)}


@cerebelum.handler("refuse")
def refuse(ctx):
    raise cerebelum.NonRetryable("refused")
"""
FLOW: dict[str, Any] = {
    "name": "dice",
    "entrypoint": "a",
    "nodes": {"a": {"type": "function", "config": {"handler": "roll"}}, "b": {"type": "function", "config": {"handler": "roll"}}},
    "edges": [{"from": "a", "to": "b"}],
}
UNREACHABLE_DB = "postgresql://nobody@127.0.0.1:1/none"


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(cwd: Path, *args: str) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    done = subprocess.run([str(CLI), *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def sql_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'source.db'}"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "h.py").write_text(HANDLERS)
    (tmp_path / "changed.py").write_text(HANDLERS.replace("ctx.randint(1, 6)", "ctx.randint(1, 6) + 1"))
    (tmp_path / "flow.json").write_text(json.dumps(FLOW))
    return tmp_path


def test_export_import_and_replay_a_bundle_through_the_cli(work: Path, sql_url: str) -> None:
    ran = cli(work, "--db", sql_url, "run", "flow.json", "--handlers", "h.py", "--json")
    assert ran.code == 0, ran.err
    execution_id = json.loads(ran.out)["execution_id"]

    exported = cli(work, "--db", sql_url, "export", execution_id, "-o", "bundle.json")
    assert exported.code == 0, exported.err
    bundle = json.loads((work / "bundle.json").read_text())
    assert bundle["format"] == "cerebelum.history" and bundle["workflow"]["definition"]["name"] == "dice"
    assert [e["sequence"] for e in bundle["events"]] == list(range(len(bundle["events"])))
    to_stdout = cli(work, "--db", sql_url, "export", execution_id)
    assert to_stdout.code == 0 and json.loads(to_stdout.out)["events"] == bundle["events"]
    unknown = cli(work, "--db", sql_url, "export", "exec-unknown")
    assert unknown.code == 2 and "unknown execution" in unknown.err

    # replay --file needs no database: an unreachable one is never asked
    for args, code in (
        (["replay", "--file", "bundle.json"], 0),
        (["replay", "--file", "bundle.json", "--strict", "--handlers", "h.py"], 0),
        (["replay", "--file", "bundle.json", "--strict", "--handlers", "changed.py"], 1),
    ):
        result = cli(work, "--db", UNREACHABLE_DB, *args)
        assert result.code == code, (args, result.out, result.err)
    diverged = cli(work, "replay", "--file", "bundle.json", "--strict", "--handlers", "changed.py", "--json")
    assert diverged.code == 1 and json.loads(diverged.out)["divergence"]["node_id"] == "a"

    text = (work / "bundle.json").read_text()
    (work / "truncated.json").write_text(text[: len(text) // 3])
    truncated = cli(work, "replay", "--file", "truncated.json")
    assert truncated.code == 2 and "truncated.json" in truncated.err and "truncated" in truncated.err
    neither = cli(work, "replay")
    assert neither.code == 2 and "--file" in neither.err

    target = f"sqlite:///{work / 'target.db'}"
    imported = cli(work, "--db", target, "import", "bundle.json", "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["execution_id"] == execution_id
    with cerebelum.Engine(sql_url, workers=0) as source, cerebelum.Engine(target, workers=0) as copy:
        assert copy.status(execution_id).to_json() == source.status(execution_id).to_json()
        assert [e.to_json() for e in copy.events(execution_id)] == [e.to_json() for e in source.events(execution_id)]
    again = cli(work, "--db", target, "import", "bundle.json")
    assert again.code == 2 and "already exists" in again.err

    edited = json.loads(text)
    edited["execution"]["execution_id"] = "exec-edited"
    edited["events"][1]["payload"] = []
    (work / "edited.json").write_text(json.dumps(edited))
    refused = cli(work, "--db", target, "import", "edited.json")
    assert refused.code == 2 and "edited.json: events.1.payload: must be an object" in refused.err
    with cerebelum.Engine(target, workers=0) as copy:
        assert [e.id for e in copy.executions()] == [execution_id]  # nothing else was written


def test_executions_list_and_purge_through_the_cli(work: Path, sql_url: str) -> None:
    registry = cerebelum.HandlerRegistry()
    registry.register("roll", lambda ctx: {"n": 1})
    registry.register("refuse", lambda ctx: (_ for _ in ()).throw(cerebelum.NonRetryable("no")))
    failing = {**FLOW, "name": "refusal", "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "refuse"}}}}
    with cerebelum.Engine(sql_url, workers=0, handlers=registry) as engine:
        done = [engine.run(FLOW, {"i": i}).id for i in range(2)]
        failed = engine.run(failing, {}).id
        waiting = engine.execute(FLOW, {"i": 9}).id  # pending: no worker runs it

    def listed(*args: str) -> list[str]:
        result = cli(work, "--db", sql_url, "executions", "list", "--json", *args)
        assert result.code == 0, result.err
        return [e["execution_id"] for e in json.loads(result.out)["items"]]

    assert set(listed()) == {*done, failed, waiting}
    assert listed("--status", "failed") == [failed]
    assert set(listed("--status", "completed,failed")) == {*done, failed}
    assert set(listed("--status", "pending", "--status", "failed")) == {waiting, failed}
    assert len(listed("--workflow", "dice", "--limit", "1")) == 1
    bad = cli(work, "--db", sql_url, "executions", "list", "--status", "done")
    assert bad.code == 2 and "--status" in bad.err
    text = cli(work, "--db", sql_url, "executions", "list")
    assert text.code == 0 and len(text.out.splitlines()) == 4

    def purge(*args: str) -> Result:
        return cli(work, "--db", sql_url, "executions", "purge", *args)

    dry = purge("--older-than", "0s", "--dry-run", "--json")
    assert dry.code == 0 and json.loads(dry.out)["count"] == 3 and json.loads(dry.out)["dry_run"] is True
    assert json.loads(purge("--older-than", "1d", "--json").out)["count"] == 0
    only_failed = purge("--older-than", "0s", "--status", "failed")
    assert only_failed.code == 0 and only_failed.out.startswith("purged 1 execution(s)")
    assert json.loads(purge("--older-than", "0s", "--workflow", "dice", "--json").out)["count"] == 2
    with cerebelum.Engine(sql_url, workers=0) as engine:
        assert [e.id for e in engine.executions()] == [waiting]  # never one that has not finished

    for args, named in (
        (["--older-than", "30 days"], "--older-than"),
        (["--older-than", "1d", "--status", "pending"], "--status"),
    ):
        result = purge(*args)
        assert result.code == 2 and named in result.err, (args, result.err)
    worker = cli(work, "--db", sql_url, "worker", "--retention", "soon")
    assert worker.code == 2 and "--retention" in worker.err


def test_a_worker_started_with_retention_purges_on_its_own(work: Path, sql_url: str) -> None:
    registry = cerebelum.HandlerRegistry()
    registry.register("roll", lambda ctx: {"n": 1})
    with cerebelum.Engine(sql_url, workers=0, handlers=registry) as engine:
        old = engine.run(FLOW, {}).id
    time.sleep(1.1)  # it ended more than the 1 s retention ago
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    worker = subprocess.Popen(
        [str(CLI), "--db", sql_url, "worker", "--retention", "1s"], cwd=work, env=base, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        with cerebelum.Engine(sql_url, workers=0) as engine:
            while time.monotonic() < deadline and engine.executions():
                time.sleep(0.1)
            assert engine.executions() == [], f"{old} was not purged"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "; retention 1s" in stderr and "purged 1 execution(s)" in stderr

"""Code versions through the real CLI (interaction spec section 10, docs/deploys.md):
the default version is the hash of the handler modules (the same file in two
places gives the same one), `--code-version` / CEREBELUM_CODE_VERSION, `status`
of a pinned execution, `executions upgrade`, a worker of the new version
finishing it, and strict replay naming the version that recorded the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import CLI, cli, write_json

import cerebelum

HANDLERS = """
import cerebelum


@cerebelum.handler("gate")
def gate(ctx):
    return {"n": 1}


@cerebelum.handler("step")
def step(ctx):
    return {"n": ctx.data["n"] + 1}


@cerebelum.handler("price")
def price(ctx):
    return {"total": 12}
"""

PINNED = {
    "name": "deploy_pinned",
    "versioning": "pinned",
    "entrypoint": "a",
    "nodes": {
        "a": {"type": "function", "config": {"handler": "gate"}},
        "b": {"type": "function", "config": {"handler": "step"}},
        "c": {"type": "function", "config": {"handler": "step"}},
    },
    "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
}


def stopped_between_nodes(url: str) -> str:
    """In this process, as code version v1: run node `a` (which asks for a pause), then resume.
    The execution is left running, unleased, pinned to v1, with `b` still to run."""
    registry = cerebelum.HandlerRegistry()
    with cerebelum.Engine(url, handlers=registry, code_version="v1", workers=0) as engine:

        def gate(ctx: cerebelum.StepContext) -> Any:
            engine.store.queue.request(ctx.execution_id, "pause")
            return {"n": 1}

        registry.register("gate", gate)
        registry.register("step", lambda ctx: {"n": ctx.data["n"] + 1})
        paused = engine.run(PINNED, {})
        assert paused.status == "paused", paused.error
        return engine.resume(paused.id).id


def test_the_default_code_version_is_the_same_for_the_same_handler_file_anywhere(tmp_path: Path) -> None:
    versions = []
    for place, source in (("a", HANDLERS), ("b/deep", HANDLERS), ("c", HANDLERS.replace("12", "13"))):
        work = tmp_path / place
        work.mkdir(parents=True)
        (work / "h.py").write_text(source)
        write_json(work / "flow.json", {"name": "one", "entrypoint": "a", "nodes": {"a": PINNED["nodes"]["c"]}})
        result = cli(work, "run", "flow.json", "--handlers", "h.py", "--input", '{"n": 0}', "--json")
        assert result.code == 0, result.err
        versions.append(result.one_json()["code_version"])
    assert versions[0] == versions[1] != versions[2]
    assert all(len(v) == 16 for v in versions)


def test_pinned_execution_waits_for_its_version_until_upgraded_then_a_new_worker_finishes_it(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(HANDLERS)
    execution_id = stopped_between_nodes(f"sqlite:///{tmp_path / 'cerebelum.db'}")

    status = cli(tmp_path, "status", execution_id)
    assert status.code == 0, status.err
    assert "code_version: v1 (pinned)" in status.out
    assert "waiting: for code version v1" in status.out
    shown = cli(tmp_path, "status", execution_id, "--json").one_json()
    assert (shown["code_version"], shown["versioning"], shown["waiting_for_code_version"]) == ("v1", "pinned", "v1")

    bad = cli(tmp_path, "--code-version", "not a version", "status", execution_id)
    assert bad.code == 2 and "--code-version" in bad.err and "Traceback" not in bad.err
    bad = cli(tmp_path, "status", execution_id, env={"CEREBELUM_CODE_VERSION": "x" * 65})
    assert bad.code == 2 and "--code-version" in bad.err
    none = cli(tmp_path, "executions", "upgrade")
    assert none.code == 2 and "EXECUTION_ID" in none.one_error_line()
    half = cli(tmp_path, "executions", "upgrade", "--workflow", "deploy_pinned")
    assert half.code == 2 and "--from-version" in half.one_error_line()
    unknown = cli(tmp_path, "--code-version", "v2", "executions", "upgrade", "exec-nope")
    assert unknown.code == 2 and "exec-nope" in unknown.one_error_line()

    moved = cli(tmp_path, "--code-version", "v2", "executions", "upgrade", execution_id, "--json")
    assert moved.code == 0, moved.err
    assert (moved.one_json()["code_version"], moved.one_json()["waiting_for_code_version"]) == ("v2", "v2")
    log = [json.loads(line) for line in cli(tmp_path, "events", execution_id, "--json").out.splitlines()]
    changed = [e for e in log if e["type"] == "code_version_changed"]
    assert [(c["payload"], c["code_version"]) for c in changed] == [({"from": "v1", "to": "v2", "reason": "upgrade"}, "v2")]

    many = cli(tmp_path, "executions", "upgrade", "--workflow", "deploy_pinned", "--from-version", "v2", "--json",
               env={"CEREBELUM_CODE_VERSION": "v3"})  # fmt: skip
    assert many.code == 0, many.err
    assert [x["code_version"] for x in many.one_json()["items"]] == ["v3"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    worker = subprocess.Popen(
        [str(CLI), "--code-version", "v3", "worker", "--handlers", "h.py", "--poll-interval", "0.05"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (done := cli(tmp_path, "status", execution_id, "--json").one_json())["status"] != "completed":
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, done
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert "code version v3" in err
    assert (done["output"], done["code_version"], done["waiting_for_code_version"]) == ({"n": 3}, "v3", None)

    ended = cli(tmp_path, "--code-version", "v4", "executions", "upgrade", execution_id)
    assert ended.code == 2 and "completed" in ended.one_error_line()


def test_strict_replay_names_the_code_version_that_recorded_the_divergent_event(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(HANDLERS)  # `price` returns 12 now
    old = cerebelum.HandlerRegistry()
    old.register("price", lambda ctx: {"total": 10})
    with cerebelum.Engine(f"sqlite:///{tmp_path / 'cerebelum.db'}", handlers=old, code_version="v1", workers=0) as engine:
        priced = {"name": "priced", "entrypoint": "p", "nodes": {"p": {"type": "function", "config": {"handler": "price"}}}}
        done = engine.run(priced)
    result = cli(tmp_path, "--code-version", "v9", "replay", done.id, "--strict", "--handlers", "h.py")
    assert result.code == 1, result.err
    assert "recorded by code version v1" in result.out
    assert "replayed with code version v9" in result.out
    report = cli(tmp_path, "replay", done.id, "--strict", "--handlers", "h.py", "--json").one_json()
    assert report["divergence"]["code_version"] == "v1"

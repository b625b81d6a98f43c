"""End-to-end tests of the installed `cerebelum` console script (docs: interfaces.md, "CLI").

Every test runs the real entry point in a subprocess, in the test's own
temporary directory, with a handlers file written there, and checks the exit
code, stdout and stderr against the CLI contract: one JSON object on one line
for `--json`, errors as one readable line on stderr without a traceback
(unless `--debug`), exit 0 / 1 (failed execution) / 2 (bad input).

Each subprocess pays Python's start-up, so the tests group several related
invocations; the whole file makes a few dozen of them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import empty_pg

import cerebelum

CLI = Path(sys.executable).parent / "cerebelum"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
RUN_KEYS = {"execution_id", "workflow", "version", "status", "input", "output", "error", "started_at", "completed_at"}

HANDLERS = """
import cerebelum


@cerebelum.handler("double")
def double(ctx):
    return {"n": ctx.data["n"] * 2}


@cerebelum.handler("boom")
def boom(ctx):
    raise RuntimeError("kaboom " + str(ctx.data.get("n")))


@cerebelum.handler("stamp")
def stamp(ctx):
    return {"now": ctx.now().isoformat(), "r": ctx.random(), "i": ctx.randint(1, 10**9)}
"""

MORE_HANDLERS = """
import cerebelum


@cerebelum.handler("inc")
def inc(ctx):
    return {"n": ctx.data["n"] + 1}
"""

FLOW: dict[str, Any] = {
    "name": "doubler",
    "entrypoint": "a",
    "nodes": {
        "a": {"type": "function", "config": {"handler": "double"}},
        "b": {"type": "function", "config": {"handler": "double"}},
    },
    "edges": [{"from": "a", "to": "b"}],
}


# -- helpers ------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_json(self) -> dict[str, Any]:
        """stdout is exactly one JSON object on one line."""
        assert self.out.endswith("\n") and self.out.count("\n") == 1, self.out
        value = json.loads(self.out)
        assert isinstance(value, dict)
        return value

    def one_error_line(self) -> str:
        """stderr is one readable line, without a traceback."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the installed entry point; no CEREBELUM_* variable leaks in from the test process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    done = subprocess.run(
        [str(CLI), *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value, indent=2))
    return path.name


def check_run_object(obj: dict[str, Any]) -> None:
    assert obj.keys() >= RUN_KEYS, obj
    assert obj["execution_id"].startswith("exec-")
    assert RFC3339_UTC.match(obj["started_at"]), obj["started_at"]
    if obj["status"] in ("completed", "failed"):
        assert RFC3339_UTC.match(obj["completed_at"]), obj["completed_at"]


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The working directory of a test: handlers file h.py and flow.json."""
    (tmp_path / "h.py").write_text(HANDLERS)
    write_json(tmp_path / "flow.json", FLOW)
    return tmp_path


# -- validate -------------------------------------------------------------------


def test_validate_valid_json_and_yaml(work: Path) -> None:
    result = cli(work, "validate", "flow.json")
    assert result.code == 0, result.err
    assert "valid" in result.out

    (work / "flow.yaml").write_text(yaml.safe_dump({**FLOW, "name": "doubler_yaml"}))
    result = cli(work, "validate", "flow.yaml", "--handlers", "h.py")
    assert result.code == 0, result.err
    assert "Traceback" not in result.err


def test_validate_invalid_prints_every_problem_with_its_location(work: Path) -> None:
    bad = {
        "name": "bad",
        "entrypoint": "a",
        "nodes": {
            "a": {"type": "function", "config": {"handler": "doubel"}},  # unknown handler (handlers are loaded)
            "b": {"type": "nope"},  # unknown node type
            "c": {"type": "function", "config": {}},  # missing handler
            "lonely": {"type": "function", "config": {"handler": "double"}},  # unreachable
        },
        "edges": [
            {"from": "a", "to": "b"},
            {"from": "b", "to": "c", "when": "data.n >"},  # does not compile
            {"from": "c", "to": "ghost"},  # unknown node
        ],
    }
    write_json(work / "bad.json", bad)
    result = cli(work, "validate", "bad.json", "--handlers", "h.py")
    assert result.code == 2
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    locations = ["nodes.a.config.handler", "nodes.b", "nodes.c.config.handler", "nodes.lonely", "edges[1].when", "edges[2].to"]
    for location in locations:
        assert any(location in line for line in lines), (location, result.err)
    assert len(lines) >= len(locations)
    assert all(line.startswith("bad.json: ") for line in lines), result.err


def test_validate_file_that_is_not_json(work: Path) -> None:
    (work / "broken.json").write_text('{"name": "x",\n  "nodes": \n}\n')
    result = cli(work, "validate", "broken.json")
    assert result.code == 2
    line = result.one_error_line()
    assert "broken.json" in line and "line 3" in line, line


# -- run ------------------------------------------------------------------------


def test_run_json_status_events_on_the_default_database(work: Path) -> None:
    result = cli(work, "run", "flow.json", "--handlers", "h.py", "--input", '{"n": 3}', "--json")
    assert result.code == 0, result.err
    assert result.err == ""  # no live progress when stderr is not a terminal
    ran = result.one_json()
    check_run_object(ran)
    assert (ran["workflow"], ran["version"], ran["status"]) == ("doubler", 1, "completed")
    assert (ran["input"], ran["output"], ran["error"]) == ({"n": 3}, {"n": 12}, None)
    assert (work / "cerebelum.db").is_file()  # default: sqlite:///cerebelum.db in the working directory
    exec_id = ran["execution_id"]

    status = cli(work, "status", exec_id, "--json")
    assert status.code == 0, status.err
    shown = status.one_json()
    check_run_object(shown)
    assert {k: shown[k] for k in RUN_KEYS} == {k: ran[k] for k in RUN_KEYS}

    human = cli(work, "status", exec_id)
    assert human.code == 0, human.err
    assert exec_id in human.out and "completed" in human.out and "12" in human.out

    events = cli(work, "events", exec_id, "--json")
    assert events.code == 0, events.err
    rows = [json.loads(line) for line in events.out.splitlines()]
    assert [row["sequence"] for row in rows] == list(range(len(rows)))
    for row in rows:
        assert {"sequence", "type", "node_id", "payload", "timestamp"} <= row.keys(), row
        assert RFC3339_UTC.match(row["timestamp"]), row["timestamp"]
    assert rows[0]["type"] == "execution_started"
    assert rows[-1]["type"] == "execution_completed"
    assert [row["node_id"] for row in rows if row["type"] == "node_completed"] == ["a", "b"]

    for command in ("status", "events"):
        unknown = cli(work, command, "exec-00000000-0000-0000-0000-000000000000", "--json")
        assert unknown.code == 2, (command, unknown)
        assert unknown.out == ""
        assert "exec-00000000-0000-0000-0000-000000000000" in unknown.one_error_line()


def test_run_failed_execution_exits_1_with_one_json_object(work: Path) -> None:
    flow = {"name": "failer", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "boom"}}}}
    write_json(work / "fail.json", flow)
    (work / "in.json").write_text('{"n": 41}')
    result = cli(work, "run", "fail.json", "--handlers", "h.py", "--input", "@in.json", "--json")
    assert result.code == 1
    assert "Traceback" not in result.err
    obj = result.one_json()
    check_run_object(obj)
    assert (obj["status"], obj["input"], obj["output"]) == ("failed", {"n": 41}, None)
    error = obj["error"]
    assert {"kind", "message", "node", "attempt"} <= error.keys(), error
    assert (error["node"], error["attempt"]) == ("a", 1)
    assert "kaboom 41" in error["message"]  # also shows that --input @file was read


def test_run_input_that_is_not_json(work: Path) -> None:
    result = cli(work, "run", "flow.json", "--handlers", "h.py", "--input", "{n: 3", "--json")
    assert result.code == 2
    assert result.out == ""
    line = result.one_error_line()
    assert "--input" in line and "JSON" in line, line


def test_run_unknown_handler_is_a_validation_error_when_handlers_are_loaded(work: Path) -> None:
    flow = {**FLOW, "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "doubel"}}}}
    write_json(work / "typo.json", flow)
    result = cli(work, "run", "typo.json", "--handlers", "h.py", "--json")
    assert result.code == 2
    assert result.out == ""
    line = result.one_error_line()
    assert "nodes.b.config.handler" in line and "doubel" in line, line


def test_run_virtual_time_and_seed(work: Path) -> None:
    flow = {
        "name": "month_later",
        "entrypoint": "wait",
        "nodes": {
            "wait": {"type": "delay", "config": {"seconds": 30 * 24 * 3600}},
            "stamp": {"type": "function", "config": {"handler": "stamp"}},
        },
        "edges": [{"from": "wait", "to": "stamp"}],
    }
    write_json(work / "month.json", flow)
    outputs = []
    for _ in range(2):
        began = time.monotonic()
        result = cli(work, "run", "month.json", "--handlers", "h.py", "--virtual-time", "--seed", "42", "--json")
        assert time.monotonic() - began < 30
        assert result.code == 0, result.err
        obj = result.one_json()
        assert obj["status"] == "completed", obj
        assert ts(obj["output"]["now"]) - ts(obj["started_at"]) >= timedelta(days=30)
        outputs.append(obj)
    first, second = outputs
    assert first["execution_id"] != second["execution_id"]
    assert (first["output"]["r"], first["output"]["i"]) == (second["output"]["r"], second["output"]["i"])


# -- global options ------------------------------------------------------------


def test_global_options_before_and_after_the_subcommand(work: Path) -> None:
    before = cli(work, "--db", "sqlite:///opts.db", "--handlers", "h.py", "run", "flow.json", "--input", '{"n": 1}', "--json")
    assert before.code == 0, before.err
    assert before.one_json()["output"] == {"n": 4}

    after = cli(work, "run", "flow.json", "--input", '{"n": 2}', "--json", "--db", "sqlite:///opts.db", "--handlers", "h.py")
    assert after.code == 0, after.err
    obj = after.one_json()
    assert (obj["output"], obj["version"]) == ({"n": 8}, 1)  # same database: the stored version is reused
    assert (work / "opts.db").is_file()
    assert not (work / "cerebelum.db").exists()


def test_handlers_add_up_and_the_later_db_wins(work: Path) -> None:
    (work / "h2.py").write_text(MORE_HANDLERS)
    flow = {**FLOW, "name": "two_files", "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "inc"}}}}
    write_json(work / "two.json", flow)
    result = cli(
        work,
        *("--db", "sqlite:///a.db", "--handlers", "h.py", "run", "two.json"),
        *("--db", "sqlite:///b.db", "--handlers", "h2.py", "--input", '{"n": 5}', "--json"),
    )
    assert result.code == 0, result.err
    obj = result.one_json()
    assert (obj["status"], obj["output"]) == ("completed", {"n": 11})

    in_b = cli(work, "status", obj["execution_id"], "--db", "sqlite:///b.db", "--json")
    assert in_b.code == 0, in_b.err
    assert in_b.one_json()["execution_id"] == obj["execution_id"]
    in_a = cli(work, "--db", "sqlite:///a.db", "status", obj["execution_id"])
    assert in_a.code == 2
    assert obj["execution_id"] in in_a.one_error_line()


def test_environment_fallbacks(work: Path) -> None:
    (work / "shop").mkdir()
    (work / "shop" / "__init__.py").write_text("")
    (work / "shop" / "steps.py").write_text(HANDLERS)
    env = {"CEREBELUM_DB": "sqlite:///env.db", "CEREBELUM_HANDLERS": "shop.steps"}  # a dotted module this time
    result = cli(work, "run", "flow.json", "--input", '{"n": 1}', "--json", env=env)
    assert result.code == 0, result.err
    obj = result.one_json()
    assert (obj["status"], obj["output"]) == ("completed", {"n": 4})  # handlers came from CEREBELUM_HANDLERS
    assert (work / "env.db").is_file()
    assert not (work / "cerebelum.db").exists()
    status = cli(work, "status", obj["execution_id"], "--json", env={"CEREBELUM_DB": "sqlite:///env.db"})
    assert status.code == 0, status.err
    assert status.one_json()["status"] == "completed"


# -- versions ---------------------------------------------------------------------


def test_run_reuses_identical_definitions_and_versions_changed_ones(work: Path) -> None:
    write_json(work / "flow_v1.json", {**FLOW, "version": 1})
    changed = {**FLOW, "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "stamp"}}}}
    write_json(work / "changed.json", changed)
    write_json(work / "changed_v1.json", {**changed, "version": 1})

    def run(name: str) -> Result:
        return cli(work, "run", name, "--handlers", "h.py", "--input", '{"n": 1}', "--json")

    first, same, new = run("flow.json"), run("flow_v1.json"), run("changed.json")
    for result in (first, same, new):
        assert result.code == 0, result.err
    assert [r.one_json()["version"] for r in (first, same, new)] == [1, 1, 2]

    conflict = run("changed_v1.json")
    assert conflict.code == 2
    assert conflict.out == ""
    assert "version 1" in conflict.one_error_line()

    listed = cli(work, "workflows", "list", "--json")
    assert listed.code == 0, listed.err
    items = listed.one_json()["items"]
    assert sorted((w["name"], w["version"]) for w in items) == [("doubler", 1), ("doubler", 2)]

    shown = cli(work, "workflows", "show", "doubler", "--version", "2")
    assert shown.code == 0, shown.err
    stored = json.loads(shown.out)
    assert (stored["name"], stored["version"]) == ("doubler", 2)
    assert {k: v for k, v in stored["definition"].items() if k != "version"} == changed


# -- graph, db ---------------------------------------------------------------------


def test_graph_prints_mermaid(work: Path) -> None:
    flow = {
        "name": "routed",
        "entrypoint": "first",
        "nodes": {
            "first": {"type": "function", "config": {"handler": "double"}},
            "route": {"type": "conditional", "config": {}},
            "big": {"type": "function", "config": {"handler": "double"}},
            "small": {"type": "delay", "config": {"seconds": 1}},
        },
        "edges": [
            {"from": "first", "to": "route"},
            {"from": "route", "to": "big", "when": "data.n > 10"},
            {"from": "route", "to": "small"},
        ],
    }
    write_json(work / "routed.json", flow)
    result = cli(work, "graph", "routed.json")
    assert result.code == 0, result.err
    assert result.out.startswith("flowchart")
    for node_id in flow["nodes"]:
        assert re.search(rf"\b{node_id}\b", result.out), node_id
    for edge in flow["edges"]:
        assert re.search(rf"^\s*{edge['from']}\s*--+>(\|[^|]*\|)?\s*{edge['to']}\s*$", result.out, re.M), (edge, result.out)


def test_db_upgrade_on_sqlite_is_idempotent(work: Path) -> None:
    for args in (("db", "upgrade", "--db", "sqlite:///fresh.db"), ("--db", "sqlite:///fresh.db", "db", "upgrade")):
        result = cli(work, *args)
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
    assert (work / "fresh.db").is_file()


def test_postgresql_upgrade_and_run(work: Path, pg_url: str) -> None:
    empty_pg(pg_url)
    upgrade = cli(work, "db", "upgrade", "--db", pg_url)
    assert upgrade.code == 0, upgrade.err

    result = cli(work, "--db", pg_url, "run", "flow.json", "--handlers", "h.py", "--input", '{"n": 10}', "--json")
    assert result.code == 0, result.err
    obj = result.one_json()
    check_run_object(obj)
    assert (obj["status"], obj["output"]) == ("completed", {"n": 40})
    assert not (work / "cerebelum.db").exists()


# -- errors and --debug --------------------------------------------------------------


def test_debug_shows_the_traceback_only_when_asked(work: Path) -> None:
    (work / "broken_handlers.py").write_text('raise ImportError("no such service")\n')
    plain = cli(work, "run", "flow.json", "--handlers", "broken_handlers.py")
    assert plain.code == 2
    line = plain.one_error_line()
    assert "--handlers broken_handlers.py: import failed:" in line and "no such service" in line, line

    debug = cli(work, "--debug", "run", "flow.json", "--handlers", "broken_handlers.py")
    assert debug.code == 2
    assert "Traceback" in debug.err and "no such service" in debug.err


# -- contract mismatches these tests found (now fixed) ------------------------------------


def test_unsupported_database_url_is_bad_input(work: Path) -> None:
    result = cli(work, "status", "exec-00000000-0000-0000-0000-000000000000", "--db", "mysql://localhost/x")
    line = result.one_error_line()
    assert "mysql" in line and "internal error" not in line, line
    assert result.code == 2


def test_run_input_null_is_kept(work: Path) -> None:
    write_json(
        work / "echo.json", {"name": "echo", "entrypoint": "w", "nodes": {"w": {"type": "delay", "config": {"seconds": 0}}}}
    )
    result = cli(work, "run", "echo.json", "--input", "null", "--json")
    assert result.code == 0, result.err
    obj = result.one_json()
    assert (obj["input"], obj["output"]) == (None, None)


def test_status_and_run_show_the_last_frame_of_a_handlers_traceback(work: Path) -> None:
    flow = {"name": "failer", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "boom"}}}}
    write_json(work / "fail.json", flow)
    boom_line = HANDLERS.splitlines().index('    raise RuntimeError("kaboom " + str(ctx.data.get("n")))') + 1
    ran = cli(work, "run", "fail.json", "--handlers", "h.py", "--input", '{"n": 1}')
    assert ran.code == 1
    assert f"h.py:{boom_line}" in ran.err, ran.err
    execution_id = ran.out.split()[0]
    shown = cli(work, "status", execution_id)
    assert shown.code == 0
    assert re.search(rf"^\s+at: \S*h\.py:{boom_line}$", shown.out, re.MULTILINE), shown.out
    assert re.search(r"^\s+node: a \(attempt 1\)$", shown.out, re.MULTILINE), shown.out
    as_json = cli(work, "status", execution_id, "--json").one_json()
    assert "in boom" in as_json["error"]["traceback"]


SLOW_HANDLERS = """
import os
import time

import cerebelum


@cerebelum.handler("quick")
def quick(ctx):
    return {"n": 1}


@cerebelum.handler("slow")
def slow(ctx):
    time.sleep(float(os.environ["SLOW_S"]))  # a blocking handler, in a thread
    return {"slept": True}
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ctrl_c_on_run_hands_the_execution_back_to_a_worker_at_once(
    work: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{work / 'ctrl_c.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        empty_pg(url)
    (work / "slow.py").write_text(SLOW_HANDLERS)
    flow = {
        "name": "interrupted",
        "entrypoint": "a",
        "nodes": {
            "a": {"type": "function", "config": {"handler": "quick"}},
            "b": {"type": "function", "config": {"handler": "slow"}},
        },
        "edges": [{"from": "a", "to": "b"}],
    }
    write_json(work / "slow.json", flow)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    run = subprocess.Popen(
        [str(CLI), "--db", url, "run", "slow.json", "--handlers", "slow.py"],
        cwd=work, env={**base, "SLOW_S": "600"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    with cerebelum.Engine(url, workers=0) as engine:
        deadline = time.monotonic() + 30
        execution_id = None
        while execution_id is None:
            assert time.monotonic() < deadline and run.poll() is None, "the slow node never started"
            listed = engine.executions("interrupted")
            if listed and any(e.type == "node_started" and e.node_id == "b" for e in engine.events(listed[0].id)):
                execution_id = listed[0].id
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=15)
        assert run.returncode == 130, (out, err)
        for noise in ("Traceback", "Task was destroyed", "Event loop is closed", "RuntimeError"):
            assert noise not in err, err
        assert out.split() == [execution_id, "running"]
        assert f"events {execution_id} --follow" in err and f"cancel {execution_id}" in err, err
        # handed back: a worker takes it over at once, well before the 30 s lease would lapse
        interrupted_at = time.monotonic()
        worker = subprocess.Popen(
            [str(CLI), "--db", url, "worker", "--handlers", "slow.py", "--poll-interval", "0.1"],
            cwd=work, env={**base, "SLOW_S": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            while (status := engine.status(execution_id).status) != "completed":
                assert time.monotonic() - interrupted_at < 12, f"still {status} after 12 s"
                assert worker.poll() is None, worker.communicate()[1]
                time.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        assert engine.status(execution_id).output == {"slept": True}


def test_a_memory_database_warns_when_the_work_outlives_the_command(work: Path) -> None:
    started = cli(work, "--db", "memory://", "start", "flow.json", "--input", '{"n": 1}')
    assert started.code == 0
    execution_id = started.out.strip()
    assert execution_id.startswith("exec-")
    assert re.search(rf"warning: --db memory:// .*{execution_id} is lost", started.err), started.err
    ran = cli(work, "--db", "memory://", "run", "flow.json", "--handlers", "h.py", "--input", '{"n": 1}')
    assert ran.code == 0 and "warning" not in ran.err  # run finishes its work before it exits


def test_workflows_delete_soft_deletes_one_version(work: Path) -> None:
    db = ["--db", f"sqlite:///{work / 'deletes.db'}"]
    assert cli(work, *db, "run", "flow.json", "--handlers", "h.py", "--input", '{"n": 1}').code == 0
    changed = {**FLOW, "nodes": {**FLOW["nodes"], "b": {"type": "function", "config": {"handler": "double", "timeout_s": 5}}}}
    write_json(work / "flow2.json", changed)
    assert cli(work, *db, "run", "flow2.json", "--handlers", "h.py", "--input", '{"n": 1}').code == 0
    queued = cli(work, *db, "start", "doubler", "--version", "2").out.strip()  # not finished: v2 cannot go

    deleted = cli(work, *db, "workflows", "delete", "doubler", "--version", "1")
    assert (deleted.code, deleted.out.strip()) == (0, "deleted doubler v1")
    listed = cli(work, *db, "workflows", "list", "--json").one_json()
    assert [(w["name"], w["version"]) for w in listed["items"]] == [("doubler", 2)]
    again = cli(work, *db, "workflows", "delete", "doubler", "--version", "1")
    assert again.code == 2 and again.err.startswith("error:") and "Traceback" not in again.err
    refused = cli(work, *db, "workflows", "delete", "doubler", "--version", "2")
    assert refused.code == 2 and "running" in refused.err, refused.err
    assert cli(work, *db, "status", queued, "--json").one_json()["status"] == "pending"
    assert cli(work, *db, "workflows", "delete", "doubler").code == 2  # --version is required

"""Expressions have a cost bound (interaction.md section 12; docs/limits.md).

The CEL library holds the GIL and has no cost limit: the issue's six nested
`map`s froze a server for 7.8 s. Static limits refuse such expressions at
validation, located; whatever passes them and still costs too much runs in
a sandbox process that is stopped at its CPU budget, and the execution fails
once, with kind `expression_limit`, while the process stays responsive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import cerebelum
from cerebelum.domain.errors import ExpressionError, ExpressionLimit
from cerebelum.domain.limits import Limits
from cerebelum.domain.validation import validate_document
from cerebelum.infrastructure.expressions import CelCompiler, is_plain, nesting
from tests.e2e.test_serve import CLI, free_port
from tests.helpers import check_log, definition, fn, of_type, wait_until_healthy

TEN = "[0,1,2,3,4,5,6,7,8,9]"


def nested_maps(depth: int) -> str:
    """The issue's attack: `depth` maps over ten items, each level x10."""
    body = "+".join(f"a{i}" for i in range(depth))
    for i in reversed(range(depth)):
        body = f"{TEN}.map(a{i}, {body})"
    return f"size({body}) > 0"


# Passes the static limits (three levels), costs len(xs)**3: with 1,000 items, 10^9 steps.
POISON = "size(input.xs.map(a, input.xs.map(b, input.xs.map(c, a + b + c)))) > 0"
POISON_INPUT = {"xs": list(range(1000))}


def poison_flow(name: str = "poison") -> dict[str, Any]:
    return definition(
        name,
        {"a": fn("one"), "b": fn("one"), "c": fn("one")},
        [
            {"from": "a", "to": "b", "when": POISON},
            {"from": "a", "to": "c"},
        ],
    )


# -- static limits, at validation ------------------------------------------------


def test_six_nested_maps_are_refused_at_validation_located_and_at_once() -> None:
    document = definition("attack", {"a": fn("one"), "b": fn("one")}, [{"from": "a", "to": "b", "when": nested_maps(6)}])
    started = time.monotonic()
    problems = validate_document(document, CelCompiler())
    elapsed = time.monotonic() - started
    assert [p.location for p in problems] == ["edges[0].when"]
    assert "nested 6 deep" in problems[0].message and "limit of 3" in problems[0].message
    assert elapsed < 0.5, elapsed  # refused by reading it, not by running it


def test_static_limits_length_and_brackets_and_their_configuration() -> None:
    long = " || ".join(["data.x == 1"] * 400)  # 5,596 characters
    with pytest.raises(ExpressionLimit, match="characters long"):
        CelCompiler().compile(long)
    assert CelCompiler(Limits(max_expression_length=10_000)).compile(long).source == long
    with pytest.raises(ExpressionLimit, match="brackets are nested"):
        CelCompiler().compile("[" * 70 + "]" * 70)
    with pytest.raises(ExpressionLimit, match="nested 2 deep"):
        CelCompiler(Limits(max_comprehension_depth=1)).compile("input.a.all(x, x.b.exists(y, y))")
    assert CelCompiler().compile(nested_maps(3)).evaluate({}) is True  # three levels are allowed


def test_nesting_ignores_strings_and_comments_but_not_spacing() -> None:
    assert nesting("'map(map(map(map(' == data.s") == (0, 0)
    assert nesting('"\\"" + "all(" + data.s') == (0, 0)  # an escaped quote does not end a string
    assert nesting("r'\\' + 'all(' + data.s") == (0, 0)  # in a raw string, a backslash escapes nothing
    assert nesting("data.xs.map (x, // a map( in a comment\n x.all(y, y))") == (2, 2)
    assert nesting('data.xs.filter(x, x == "(")') == (1, 1)


def test_only_plain_expressions_are_evaluated_in_process() -> None:
    assert is_plain("results.validate.total > 1000 && data.approved")
    assert not is_plain("data.xs.map(x, x)")
    assert not is_plain("data.xs.exists_one (x, x)")
    assert not is_plain("data.xs.all // comment\n(x, x)")
    assert not is_plain("data.s.matches('a+')")
    assert not is_plain(" + ".join(["data.s"] * 10))  # ten concatenations of a value of any size
    assert not is_plain("data.x == 1 || " * 40 + "true")


# -- the runtime bound --------------------------------------------------------------


def test_a_poison_expression_fails_the_execution_once_with_expression_limit(engine: cerebelum.Engine, registry) -> None:
    registry.register("one", lambda ctx: 1)
    started = time.monotonic()
    execution = engine.run(poison_flow(), POISON_INPUT)
    elapsed = time.monotonic() - started
    assert execution.status == "failed"
    error = execution.error
    assert error["kind"] == "expression_limit"
    assert error["location"] == "edges[0].when" and error["node"] == "a" and error["expression"] == POISON
    assert "100 ms of CPU time" in error["message"]
    log = check_log(engine, execution)
    assert len(of_type(log, "execution_failed")) == 1
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a"]
    assert elapsed < 10, elapsed


def test_the_same_expression_on_small_data_runs(engine: cerebelum.Engine, registry) -> None:
    registry.register("one", lambda ctx: 1)
    execution = engine.run(poison_flow(), {"xs": [1, 2, 3]})
    assert execution.status == "completed"
    assert [e.node_id for e in of_type(check_log(engine, execution), "node_completed")] == ["a", "b"]


def test_other_threads_run_while_an_expression_is_evaluated() -> None:
    """The GIL is free during a sandboxed evaluation: a ticking thread never
    waits long, although the evaluation burns a second of CPU."""
    compiled = CelCompiler(Limits(expression_cpu_ms=1000)).compile(POISON)
    compiled.evaluate({"input": {"xs": [1]}})  # the sandbox is up
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            time.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.monotonic()
    try:
        with pytest.raises(ExpressionLimit, match="1000 ms of CPU time"):
            compiled.evaluate({"input": POISON_INPUT})
    finally:
        stop.set()
        ticker.join()
    assert time.monotonic() - started >= 0.9  # it did run that long...
    assert len(gaps) > 20 and max(gaps) < 0.5, max(gaps)  # ...and the other thread kept going


def test_memory_is_bounded_too() -> None:
    compiled = CelCompiler(Limits(expression_cpu_ms=5000, expression_memory_mb=64)).compile(
        "size(input.xs.map(a, input.s + input.s)) > 0"
    )
    with pytest.raises(ExpressionLimit, match="more than 64 MB of memory"):
        compiled.evaluate({"input": {"xs": list(range(1000)), "s": "x" * 1_000_000}})
    assert compiled.evaluate({"input": {"xs": [1], "s": "x"}}) is True  # a fresh sandbox took its place


def test_sandboxed_results_and_errors_match_in_process_ones() -> None:
    compiler = CelCompiler()
    variables = {"data": {"items": [{"qty": 2, "sku": "a"}, {"qty": 3, "sku": "b"}]}}
    sandboxed = compiler.compile("data.items.map(i, {'sku': i.sku, 'twice': i.qty * 2})")
    assert not sandboxed.plain
    assert sandboxed.evaluate(variables) == [{"sku": "a", "twice": 4}, {"sku": "b", "twice": 6}]
    with pytest.raises(ExpressionError, match="no such key") as caught:
        compiler.compile("data.items.map(i, i.missing)").evaluate(variables)
    assert not isinstance(caught.value, ExpressionLimit)
    with pytest.raises(ExpressionError, match="not JSON"):
        compiler.compile("[1].map(x, 0.0 / 0.0)").evaluate({})


# -- a real server ------------------------------------------------------------------


def _serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    (tmp_path / "h.py").write_text("import cerebelum\n\n@cerebelum.handler('one')\ndef one(ctx):\n    return 1\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    environment.update(env, CEREBELUM_DB=f"sqlite:///{tmp_path / 'serve.db'}")
    return subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--handlers", "h.py", "--workers", "2"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(90)
def test_serve_stays_healthy_while_poison_expressions_run_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Default limits: twelve poison executions (distinct inputs, so each is
    evaluated) fail with expression_limit, once each, while /healthz answers
    within a second throughout; SIGTERM during more of them ends the server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(tmp_path, port)
    try:
        wait_until_healthy(base, server)
        api = f"{base}/api/v1"
        attack = poison_flow("attack") | {"edges": [{"from": "a", "to": "b", "when": nested_maps(6)}, {"from": "a", "to": "c"}]}
        started = time.monotonic()
        refused = httpx.post(f"{api}/workflows", json=attack, timeout=10)
        assert time.monotonic() - started < 1.0
        assert refused.status_code == 422, refused.text
        assert [d["location"] for d in refused.json()["error"]["details"]] == ["edges[0].when"]
        assert httpx.post(f"{api}/workflows", json=poison_flow(), timeout=10).status_code == 201
        latencies: list[float] = []
        statuses: list[int] = []
        done = threading.Event()

        def watch_health() -> None:  # from before the first start until all have failed
            while not done.is_set():
                began = time.monotonic()
                try:
                    statuses.append(httpx.get(f"{base}/healthz", timeout=5).status_code)
                except httpx.TransportError:
                    statuses.append(0)
                latencies.append(time.monotonic() - began)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_health)
        watcher.start()
        try:
            ids = []
            for n in range(12):
                body = {"workflow": "poison", "input": POISON_INPUT | {"n": n}}
                answer = httpx.post(f"{api}/executions", json=body, timeout=10)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["execution_id"])
            deadline = time.monotonic() + 60
            while True:
                rows = [httpx.get(f"{api}/executions/{i}", timeout=5).json() for i in ids]
                if all(row["status"] == "failed" for row in rows):
                    break
                assert time.monotonic() < deadline, rows
                time.sleep(0.1)
        finally:
            done.set()
            watcher.join()
        assert len(latencies) >= 5 and max(latencies) < 1.0, latencies
        assert set(statuses) == {200}, statuses
        for row in rows:
            assert row["error"]["kind"] == "expression_limit" and row["error"]["location"] == "edges[0].when", row
            events = httpx.get(f"{api}/executions/{row['execution_id']}/events", timeout=5).json()
            items = events["items"] if isinstance(events, dict) else events
            assert [e["type"] for e in items].count("execution_failed") == 1

        for n in range(8, 16):  # SIGTERM while these are being evaluated: the server ends in time
            httpx.post(f"{api}/executions", json={"workflow": "poison", "input": POISON_INPUT | {"n": n}}, timeout=10)
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.monotonic() - began < 15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

"""The engine's behaviour, run over the in-memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta

import pytest
from tests.helpers import chain, check_log, definition, fn, in_threads, of_type

import cerebelum
from cerebelum.application.execute_workflow import InvalidInput, start_execution


def test_linear_chain_completes_and_log_folds_to_row(engine, registry):
    registry.register("double", lambda ctx: {"n": ctx.data["n"] * 2})
    registry.register("inc", lambda ctx: {"n": ctx.data["n"] + 1})
    doc = definition("linear", {"a": fn("double"), "b": fn("inc"), "c": fn("double")}, chain("a", "b", "c"))
    execution = engine.run(doc, {"n": 5})
    assert execution.status == "completed"
    assert execution.output == {"n": 22}
    log = check_log(engine, execution)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b", "c"]
    assert [e.payload["to"] for e in of_type(log, "edge_taken")] == ["b", "c"]


def test_context_exposes_input_results_data_and_idempotency_key(engine, registry):
    seen = {}

    def first(ctx):
        return {"x": 1}

    def second(ctx):
        seen.update(input=ctx.input, results=dict(ctx.results), data=ctx.data, key=ctx.idempotency_key, node=ctx.node_id)
        return "ok"

    registry.register("first", first)
    registry.register("second", second)
    execution = engine.run(definition("ctx", {"a": fn("first"), "b": fn("second")}, chain("a", "b")), {"in": True})
    assert seen == {
        "input": {"in": True},
        "results": {"a": {"x": 1}},
        "data": {"x": 1},
        "key": f"{execution.id}/b/1",
        "node": "b",
    }


def test_conditional_takes_first_edge_that_holds_in_listed_order(engine, registry):
    registry.register("score", lambda ctx: {"score": ctx.input["score"]})
    registry.register("high", lambda ctx: "high")
    registry.register("mid", lambda ctx: "mid")
    registry.register("low", lambda ctx: "low")
    doc = definition(
        "route",
        {"s": fn("score"), "r": {"type": "conditional"}, "h": fn("high"), "m": fn("mid"), "l": fn("low")},
        [
            {"from": "s", "to": "r"},
            {"from": "r", "to": "h", "when": "data.score > 90"},
            {"from": "r", "to": "m", "when": "data.score > 50"},
            {"from": "r", "to": "l"},
        ],
    )
    assert engine.run(doc, {"score": 95}).output == "high"
    assert engine.run(doc, {"score": 60}).output == "mid"
    assert engine.run(doc, {"score": 10}).output == "low"


def test_no_edge_holding_fails_and_names_the_node(engine, registry):
    registry.register("a", lambda ctx: {"v": 1})
    registry.register("b", lambda ctx: 1)
    doc = definition("noroute", {"a": fn("a"), "b": fn("b")}, [{"from": "a", "to": "b", "when": "data.v > 5"}])
    execution = engine.run(doc)
    assert execution.status == "failed"
    assert execution.error["kind"] == "no_route"
    assert "'a'" in execution.error["message"]
    check_log(engine, execution)


@pytest.mark.parametrize(
    ("when", "fragment"),
    [("data.missing.deeper == 1", "edges[0].when"), ("data.v", "must give a boolean")],
)
def test_failing_or_non_boolean_condition_is_an_expression_error(engine, registry, when, fragment):
    registry.register("a", lambda ctx: {"v": 1})
    registry.register("b", lambda ctx: 1)
    doc = definition("badwhen", {"a": fn("a"), "b": fn("b")}, [{"from": "a", "to": "b", "when": when}])
    execution = engine.run(doc)
    assert execution.status == "failed"
    assert execution.error["kind"] == "expression_error"
    assert execution.error["location"] == "edges[0].when"
    assert fragment in execution.error["message"]
    check_log(engine, execution)


def test_bounded_loop_is_taken_max_iterations_times_then_falls_through(engine, registry):
    registry.register("work", lambda ctx: {"round": (ctx.data or {}).get("round", 0) + 1})
    registry.register("done", lambda ctx: ctx.data)
    doc = definition(
        "loop",
        {"work": fn("work"), "check": {"type": "conditional"}, "done": fn("done")},
        [
            {"from": "work", "to": "check"},
            {"from": "check", "to": "work", "max_iterations": 3},
            {"from": "check", "to": "done"},
        ],
    )
    execution = engine.run(doc, {})
    assert execution.status == "completed"
    assert execution.output == {"round": 4}  # first pass + 3 loop-backs
    log = check_log(engine, execution)
    assert len(of_type(log, "edge_taken")) == 4 + 3 + 1  # work->check x4, check->work x3, check->done
    assert [e.payload["run"] for e in of_type(log, "node_started", "work")] == [1, 2, 3, 4]


def test_retries_with_exponential_backoff_then_succeeds(engine, registry):
    def flaky(ctx):
        if ctx.attempt < 3:
            raise ConnectionError(f"down on attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    registry.register("flaky", flaky)
    retry = {"max_attempts": 4, "initial_interval_s": 0.05, "backoff": 2.0}
    started = time.monotonic()
    execution = engine.run(definition("retry", {"f": fn("flaky", retry=retry)}))
    elapsed = time.monotonic() - started
    assert execution.status == "completed"
    assert execution.output == {"attempt": 3}
    log = check_log(engine, execution)
    failures = of_type(log, "attempt_failed")
    assert [f.payload["attempt"] for f in failures] == [1, 2]
    assert "down on attempt 1" in failures[0].payload["error"]["message"]
    gaps = [datetime.fromisoformat(f.payload["retry_at"]) - f.timestamp for f in failures]
    assert timedelta(seconds=0.04) < gaps[0] < timedelta(seconds=0.09)
    assert timedelta(seconds=0.09) < gaps[1] < timedelta(seconds=0.15)
    assert elapsed >= 0.15  # the backoff was really waited (0.05 + 0.1)
    assert not of_type(log, "node_failed")


def test_exhausted_retries_fail_the_node_once_with_the_handler_text(engine, registry):
    def broken(ctx):
        raise ValueError("card declined")

    registry.register("broken", broken)
    retry = {"max_attempts": 2, "initial_interval_s": 0.01}
    execution = engine.run(definition("exhaust", {"f": fn("broken", retry=retry)}))
    assert execution.status == "failed"
    assert {key: execution.error[key] for key in ("kind", "message", "node", "attempt")} == {
        "kind": "handler_error",
        "message": "ValueError: card declined",
        "node": "f",
        "attempt": 2,
    }
    assert execution.error["exception"] == "ValueError" and "in broken" in execution.error["traceback"]
    log = check_log(engine, execution)
    assert len(of_type(log, "attempt_failed")) == 2
    assert of_type(log, "attempt_failed")[-1].payload["retry_at"] is None
    assert len(of_type(log, "node_failed")) == 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_timeout_counts_as_a_failed_attempt(engine, registry, kind):
    calls = []

    async def slow_async(ctx):
        calls.append(ctx.attempt)
        await asyncio.sleep(5 if ctx.attempt == 1 else 0)
        return "late" if ctx.attempt == 1 else "fast"

    def slow_sync(ctx):
        calls.append(ctx.attempt)
        time.sleep(1.0 if ctx.attempt == 1 else 0)
        return "late" if ctx.attempt == 1 else "fast"

    registry.register("slow", slow_async if kind == "async" else slow_sync)
    retry = {"max_attempts": 2, "initial_interval_s": 0}
    execution = engine.run(definition("timeout", {"f": fn("slow", timeout_s=0.2, retry=retry)}))
    assert execution.status == "completed"
    assert execution.output == "fast"  # the timed-out attempt's late result is discarded
    log = check_log(engine, execution)
    failure = of_type(log, "attempt_failed")[0].payload["error"]
    assert failure["kind"] == "timeout"
    assert calls[:2] == [1, 2]


def test_map_keeps_item_order_and_bounds_concurrency(engine, registry):
    lock = threading.Lock()
    live = {"now": 0, "max": 0}

    async def work(ctx):
        with lock:
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
        await asyncio.sleep(0.02 * (5 - ctx.index % 5))  # later items finish first
        with lock:
            live["now"] -= 1
        return {"item": ctx.item, "index": ctx.index}

    registry.register("work", work)
    doc = definition(
        "mapper",
        {"m": {"type": "map", "config": {"items": "input.xs", "max_concurrency": 3, "node": fn("work")}}},
    )
    execution = engine.run(doc, {"xs": list("abcdefgh")})
    assert execution.status == "completed"
    assert execution.output == [{"item": x, "index": i} for i, x in enumerate("abcdefgh")]
    assert live["max"] == 3
    log = check_log(engine, execution)
    assert len(of_type(log, "node_completed")) == 8 + 1


def test_map_over_empty_list_gives_empty_list(engine, registry):
    registry.register("work", lambda ctx: 1)
    doc = definition("mapempty", {"m": {"type": "map", "config": {"items": "input.xs", "node": fn("work")}}})
    assert engine.run(doc, {"xs": []}).output == []


def test_map_items_not_a_list_fails_the_node_clearly(engine, registry):
    registry.register("work", lambda ctx: 1)
    doc = definition("mapbad", {"m": {"type": "map", "config": {"items": "input.xs", "node": fn("work")}}})
    execution = engine.run(doc, {"xs": {"a": 1}})
    assert execution.status == "failed"
    assert execution.error["kind"] == "invalid_items"
    assert "nodes.m.config.items" in execution.error["message"]
    assert "object" in execution.error["message"]
    check_log(engine, execution)


def test_parallel_collects_branch_outputs(engine, registry):
    registry.register("a", lambda ctx: "A")
    registry.register("b", lambda ctx: ctx.data)
    doc = definition(
        "par", {"p": {"type": "parallel", "config": {"branches": {"x": fn("a"), "y": fn("b")}}}}
    )
    execution = engine.run(doc, {"k": 1})
    assert execution.output == {"x": "A", "y": {"k": 1}}
    check_log(engine, execution)


def test_parallel_failure_cancels_the_other_branches(engine, registry):
    finished = []

    async def slow(ctx):
        await asyncio.sleep(3)
        finished.append("slow")
        return "slow"

    async def boom(ctx):
        await asyncio.sleep(0.05)
        raise RuntimeError("branch exploded")

    registry.register("slow", slow)
    registry.register("boom", boom)
    doc = definition(
        "parfail", {"p": {"type": "parallel", "config": {"branches": {"s": fn("slow"), "b": fn("boom")}}}}
    )
    started = time.monotonic()
    execution = engine.run(doc)
    assert time.monotonic() - started < 2.5
    assert execution.status == "failed"
    assert execution.error["node"] == "p.b"
    assert "branch exploded" in execution.error["message"]
    log = check_log(engine, execution)
    assert [e.node_id for e in of_type(log, "node_cancelled")] == ["p.s"]
    assert [e.node_id for e in of_type(log, "node_failed")] == ["p.b", "p"]
    assert finished == []


def test_sequential_passes_each_output_on(engine, registry):
    registry.register("add", lambda ctx: ctx.data + 1)
    registry.register("mul", lambda ctx: ctx.data * 10)
    doc = definition("seq", {"s": {"type": "sequential", "config": {"steps": [fn("add"), fn("mul"), fn("add")]}}})
    execution = engine.run(doc, 1)
    assert execution.output == 21
    log = check_log(engine, execution)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["s[0]", "s[1]", "s[2]", "s"]


def test_delay_waits_real_time_and_passes_data_through(engine, registry):
    registry.register("a", lambda ctx: {"v": 1})
    doc = definition("delay", {"a": fn("a"), "d": {"type": "delay", "config": {"seconds": 0.3}}}, chain("a", "d"))
    started = time.monotonic()
    execution = engine.run(doc)
    assert time.monotonic() - started >= 0.3
    assert execution.output == {"v": 1}
    log = check_log(engine, execution)
    assert len(of_type(log, "timer_started")) == len(of_type(log, "timer_fired")) == 1


def test_virtual_time_runs_a_thirty_day_delay_instantly_and_handlers_see_it(engine, registry):
    registry.register("stamp", lambda ctx: ctx.now().isoformat())
    doc = definition(
        "month",
        {"before": fn("stamp"), "wait": {"type": "delay", "config": {"seconds": 30 * 86400}}, "after": fn("stamp")},
        chain("before", "wait", "after"),
    )
    started = time.monotonic()
    execution = engine.run(doc, virtual_time=True)
    assert time.monotonic() - started < 5
    assert execution.status == "completed"
    before = datetime.fromisoformat(execution.output and engine.events(execution.id)[2].payload["output"])
    after = datetime.fromisoformat(execution.output)
    assert after - before == timedelta(days=30)


def test_delay_until_an_expression(engine, registry):
    registry.register("a", lambda ctx: "ok")
    doc = definition(
        "until",
        {"d": {"type": "delay", "config": {"until": "input.at"}}, "a": fn("a")},
        chain("d", "a"),
    )
    at = (datetime.now().astimezone() + timedelta(seconds=0.2)).isoformat()
    started = time.monotonic()
    execution = engine.run(doc, {"at": at})
    assert execution.status == "completed"
    assert time.monotonic() - started >= 0.15


def test_unknown_handler_at_run_time_fails_the_node(engine):
    execution = engine.run(definition("nohandler", {"a": fn("nobody_registered_this")}))
    assert execution.status == "failed"
    assert execution.error["kind"] == "unknown_handler"
    assert "nobody_registered_this" in execution.error["message"]
    check_log(engine, execution)


def test_unknown_handler_is_a_validation_error_once_handlers_are_loaded(engine, registry):
    registry.register("known", lambda ctx: 1)
    with pytest.raises(cerebelum.ValidationError) as caught:
        engine.create_workflow(definition("typo", {"a": fn("knwon")}))
    assert [p.location for p in caught.value.problems] == ["nodes.a.config.handler"]


def test_non_json_output_fails_with_a_clear_error(engine, registry):
    registry.register("bad", lambda ctx: {"when": datetime.now()})
    execution = engine.run(definition("nonjson", {"a": fn("bad")}))
    assert execution.status == "failed"
    assert execution.error["kind"] == "invalid_output"
    assert "not JSON" in execution.error["message"]
    check_log(engine, execution)


def test_nul_in_a_string_is_refused_the_same_on_every_backend(engine, registry):
    """PostgreSQL's JSON cannot hold \\u0000, so no backend takes it: a located
    error for a handler's output, InvalidInput for an execution's input."""
    registry.register("nul", lambda ctx: {"text": "a\x00b"})
    registry.register("fine", lambda ctx: {"text": "a\\u0000b"})  # a backslash, then 'u0000': just text
    execution = engine.run(definition("nul", {"a": fn("nul")}))
    assert execution.status == "failed" and execution.error["kind"] == "invalid_output"
    assert "NUL" in execution.error["message"] and execution.error["node"] == "a"
    check_log(engine, execution)
    assert engine.run(definition("fine", {"a": fn("fine")})).output == {"text": "a\\u0000b"}
    with pytest.raises(InvalidInput, match="NUL"):
        engine.run("fine", {"name": "x\x00"})


def test_a_handler_runs_only_once_its_start_and_what_led_to_it_are_durable(engine, registry):
    """What a handler sees in the store when it starts: its own node_started, and
    the completion of the node before it (they commit together)."""
    seen = {}

    def look(ctx):
        log = engine.store.events.read(ctx.execution_id)
        seen[ctx.node_id] = [(e.type, e.node_id) for e in log]
        return {"ok": True}

    registry.register("look", look)
    steps = ["a", "b", "c"]
    execution = engine.run(definition("durable_first", {s: fn("look") for s in steps}, chain(*steps)))
    assert execution.status == "completed"
    for previous, node in [(None, "a"), ("a", "b"), ("b", "c")]:
        assert ("node_started", node) in seen[node], seen[node]
        if previous is not None:
            assert ("node_completed", previous) in seen[node], seen[node]


def test_a_steps_random_stream_does_not_follow_assignments_to_ctx(engine, registry):
    def plain(ctx):
        return {"r": ctx.random()}

    def meddling(ctx):
        ctx.attempt = 7  # handlers can assign attributes; the stream stays (seed, path, run, attempt)'s
        return {"r": ctx.random()}

    registry.register("plain", plain)
    registry.register("meddling", meddling)
    first = engine.run(definition("plain", {"a": fn("plain")}), seed=11)
    second = engine.run(definition("meddling", {"a": fn("meddling")}), seed=11)
    assert first.output == second.output


def test_function_input_and_workflow_output_expressions(engine, registry):
    registry.register("echo", lambda ctx: ctx.data)
    doc = definition(
        "exprs",
        {"a": fn("echo", input="{'x': input.n * 2}"), "b": fn("echo", input="results.a.x + 1")},
        chain("a", "b"),
        output="{'a': results.a, 'b': results.b}",
    )
    assert engine.run(doc, {"n": 4}).output == {"a": {"x": 8}, "b": 9}


def test_create_workflow_reuses_identical_and_versions_changed_definitions(engine, registry):
    registry.register("x", lambda ctx: 1)
    registry.register("y", lambda ctx: 2)
    first = engine.create_workflow(definition("versions", {"a": fn("x")}))
    again = engine.create_workflow(definition("versions", {"a": fn("x")}))
    changed = engine.create_workflow(definition("versions", {"a": fn("y")}))
    assert (first.version, again.version, changed.version) == (1, 1, 2)
    assert again.id == first.id
    explicit = engine.create_workflow(definition("versions", {"a": fn("x")}, version=7))
    assert explicit.version == 7
    assert engine.create_workflow(definition("versions", {"a": fn("x")}, version=7)).id == explicit.id
    with pytest.raises(cerebelum.Conflict):
        engine.create_workflow(definition("versions", {"a": fn("y")}, version=7))
    assert engine.get_workflow("versions").version == 7
    assert [w.version for w in engine.workflow_versions("versions")] == [1, 2, 7]


def test_execute_enqueues_and_wait_returns_the_terminal_execution(engine, registry):
    registry.register("a", lambda ctx: "done")
    pending = engine.execute(definition("queued", {"a": fn("a")}))
    assert pending.status == "pending"
    finished = engine.wait(pending.id, timeout=10)
    assert finished.status == "completed"
    assert finished.output == "done"


def test_unknown_execution_id_is_not_found(engine):
    with pytest.raises(cerebelum.NotFound):
        engine.status("exec-00000000-0000-0000-0000-000000000000")
    with pytest.raises(cerebelum.NotFound):
        engine.events("exec-00000000-0000-0000-0000-000000000000")


def test_same_seed_gives_identical_event_streams(engine, registry):
    def draw(ctx):
        return {"r": ctx.random(), "n": ctx.randint(1, 1000), "u": str(ctx.uuid4()), "item": ctx.item}

    registry.register("draw", draw)
    doc = definition("seeded", {"m": {"type": "map", "config": {"items": "input.xs", "node": fn("draw")}}})

    def stream(execution):
        """(type, node, payload) per node in order, without wall-clock-derived fields."""
        events = [e for e in engine.events(execution.id) if e.type != "execution_started"]
        rows = [(e.type, e.node_id or "", {k: v for k, v in e.payload.items() if k != "clock"}) for e in events]
        return sorted(rows, key=lambda row: row[1])  # stable: per-node order is kept

    first = engine.run(doc, {"xs": [1, 2, 3, 4]}, seed=42, virtual_time=True)
    second = engine.run(doc, {"xs": [1, 2, 3, 4]}, seed=42, virtual_time=True)
    other = engine.run(doc, {"xs": [1, 2, 3, 4]}, seed=43, virtual_time=True)
    assert stream(first) == stream(second)
    assert first.output == second.output
    assert first.output != other.output


def test_soft_deleted_version_is_hidden_but_kept_for_its_executions(engine, registry):
    registry.register("a", lambda ctx: "done")
    first = engine.create_workflow(definition("deletable", {"a": fn("a")}))
    second = engine.create_workflow(definition("deletable", {"a": fn("a", timeout_s=5)}))
    execution = engine.run("deletable", version=1)
    engine.delete_workflow("deletable", 1)
    assert [w.version for w in engine.workflow_versions("deletable")] == [second.version]
    assert engine.get_workflow("deletable").version == 2
    assert engine.get_workflow("deletable", 1).id == first.id  # still there for its executions
    with pytest.raises(cerebelum.NotFound):
        engine.run("deletable", version=1)  # but refused for new ones
    assert engine.replay(execution.id).identical
    with pytest.raises(cerebelum.NotFound):
        engine.delete_workflow("deletable", 1)
    queued, _ = start_execution(second, {}, engine.store, engine.clock, engine.ids)  # pending, nobody runs it
    with pytest.raises(cerebelum.Conflict):
        engine.delete_workflow("deletable", 2)
    assert engine.status(queued.id).status == "pending"


def test_a_run_compiles_its_definition_once_and_reads_the_stored_workflow_once(store_url, registry, monkeypatch):
    """Issue 16: create + run of a definition, then runs by name: one compilation
    per version, and a start by name costs one workflow read."""
    from cerebelum.bootstrap import expression_compiler

    compiled: list[str] = []
    real = expression_compiler()

    class Counting:
        def compile(self, source: str):
            compiled.append(source)
            return real.compile(source)

    registry.register("inc", lambda ctx: {"n": ctx.data["n"] + 1})
    doc = definition(
        "counted",
        {"a": fn("inc", input="{'n': input.n}"), "b": fn("inc")},
        [{"from": "a", "to": "b", "when": "data.n > 0"}],
    )
    with cerebelum.Engine(store_url, handlers=registry, compiler=Counting()) as engine:
        reads: list[str] = []
        workflows = engine.store.workflows
        for method in ("get", "versions", "list"):
            original = getattr(workflows, method)
            monkeypatch.setattr(workflows, method, lambda *a, _m=method, _o=original: reads.append(_m) or _o(*a))
        assert engine.run(doc, {"n": 1}).output == {"n": 3}
        assert sorted(compiled) == ["data.n > 0", "{'n': input.n}"]  # validated and compiled once, not three times
        assert reads == ["versions"]  # which version is this definition: nothing read back to start or run it
        reads.clear()
        for _ in range(3):
            assert engine.run("counted", {"n": 1}).status == "completed"
        assert reads.count("get") == 3 and "list" not in reads  # one light read per start by name
        if store_url != "memory://":  # (the memory adapter's `get` looks through `versions` itself)
            assert reads == ["get"] * 3
        assert len(compiled) == 2


def test_a_start_of_a_definition_that_fails_stores_no_version(engine, registry):
    """The new version is stored in the same transaction as the execution's row."""
    registry.register("noop", lambda ctx: None)
    doc = definition("fresh", {"a": fn("noop")})
    with pytest.raises(InvalidInput):
        engine.execute(doc, {"text": "cut emoji \ud83d"})
    assert engine.workflows() == [] and engine.executions() == []
    started = engine.execute(doc, {"n": 1})
    assert [(w.name, w.version) for w in engine.workflows()] == [("fresh", 1)] and started.version == 1


def test_concurrent_starts_of_one_new_definition_share_one_version(engine, registry):
    registry.register("noop", lambda ctx: None)
    doc = definition("shared", {"a": fn("noop")})
    versions = in_threads(lambda: engine.execute(doc, {}).version, 12)
    assert versions == [1] * 12
    assert [(w.name, w.version) for w in engine.workflows()] == [("shared", 1)]

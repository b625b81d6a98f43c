"""Debuggable failures (interaction.md section 11): a handler's traceback in the log,
and errors that are not worth retrying, on every backend."""

from __future__ import annotations

import asyncio
import inspect

from tests.helpers import check_log, definition, fn, of_type

import cerebelum

RETRY = {"max_attempts": 4, "initial_interval_s": 0.01}


class Declined(ValueError):
    """A domain error of the user's, a subclass of a builtin."""


class CardDeclined(Declined):
    pass


def _lookup(order):
    return order["items"]  # the line the traceback must point at


LOOKUP_LINE = inspect.getsourcelines(_lookup)[1] + 1


def _total(ctx):
    return {"n": len(_lookup(ctx.input))}


async def _total_async(ctx):
    await asyncio.sleep(0)
    return {"n": len(_lookup(ctx.input))}


def test_a_failed_attempt_the_node_and_the_execution_carry_the_users_traceback(engine, registry):
    registry.register("total", _total)
    registry.register("total_async", _total_async)
    for handler in ("total", "total_async"):
        retry = {"max_attempts": 2, "initial_interval_s": 0}
        execution = engine.run(definition(f"trace_{handler}", {"f": fn(handler, retry=retry)}))
        assert execution.status == "failed"
        log = check_log(engine, execution)
        attempts = of_type(log, "attempt_failed")
        assert len(attempts) == 2
        trace = attempts[0].payload["error"]["traceback"]
        assert trace.startswith("Traceback (most recent call last):")
        assert f'test_failures.py", line {LOOKUP_LINE}, in _lookup' in trace
        assert 'in _total' in trace  # the handler's own frame, above the helper's
        assert trace.rstrip().endswith("KeyError: 'items'")
        # the engine's frames (activities, handoff, asyncio, threading) are dropped
        for machinery in ("cerebelum/application", "handoff.py", "asyncio", "threading.py"):
            assert machinery not in trace, (machinery, trace)
        assert attempts[0].payload["error"]["exception"] == "KeyError"
        (node_failed,) = of_type(log, "node_failed")
        assert node_failed.payload["error"]["traceback"] == attempts[-1].payload["error"]["traceback"]
        assert execution.error is not None and execution.error["traceback"] == attempts[-1].payload["error"]["traceback"]


def test_a_traceback_is_capped_keeping_the_last_frames(engine, registry):
    def ping(n):  # two functions in turn: Python folds only repeats of one same frame
        if n == 0:
            raise RuntimeError("bottom")
        return pong(n - 1)

    def pong(n):
        return ping(n - 1)

    registry.register("deep", lambda ctx: ping(150))
    execution = engine.run(definition("deep", {"f": fn("deep")}))
    trace = execution.error["traceback"]
    assert len(trace) <= 8 * 1024
    assert "characters of earlier frames cut" in trace
    assert trace.rstrip().endswith("RuntimeError: bottom")
    assert "raise RuntimeError" in trace


def test_non_retryable_classes_fail_the_node_at_once_by_name_or_subclass(engine, registry):
    calls: dict[str, int] = {}

    def raising(kind):
        def handler(ctx):
            calls[kind.__name__] = calls.get(kind.__name__, 0) + 1
            raise kind("no")

        return handler

    registry.register("card", raising(CardDeclined))
    registry.register("value", raising(ValueError))
    registry.register("runtime", raising(RuntimeError))
    qualified = f"{Declined.__module__}.{Declined.__qualname__}"
    cases = [
        ("card", [qualified], 1),  # a subclass of a class named by its module-qualified name
        ("value", ["ValueError"], 1),  # a builtin by its bare name
        ("card", ["ValueError"], 1),  # a subclass of a builtin
        ("runtime", ["ValueError", qualified], 4),  # not listed: retried as before
    ]
    for i, (handler, names, attempts) in enumerate(cases):
        calls.clear()
        retry = {**RETRY, "non_retryable": names}
        execution = engine.run(definition(f"final{i}", {"f": fn(handler, retry=retry)}))
        assert execution.status == "failed"
        log = check_log(engine, execution)
        failed = of_type(log, "attempt_failed")
        assert len(failed) == attempts == sum(calls.values()), (handler, names)
        assert failed[-1].payload["retry_at"] is None
        assert len(of_type(log, "node_failed")) == 1
        assert execution.error.get("non_retryable", False) is (attempts == 1)


def test_a_handler_raising_cerebelum_non_retryable_is_not_retried(engine, registry):
    calls = []

    def refuse(ctx):
        calls.append(ctx.attempt)
        raise cerebelum.NonRetryable("the card was declined")

    registry.register("refuse", refuse)
    execution = engine.run(definition("refuse", {"f": fn("refuse", retry=RETRY)}))
    assert execution.status == "failed" and calls == [1]
    assert execution.error["message"] == "NonRetryable: the card was declined"
    assert execution.error["non_retryable"] is True

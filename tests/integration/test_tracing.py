"""OpenTelemetry spans from the event log: one per execution, one per node run
(its child), with the events' own times, errors as span status, retries as
span events; and nothing at all when no exporter is configured."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests.helpers import chain, definition, fn

import cerebelum
from cerebelum.infrastructure.tracing import exporter_configured, trace_engine


@pytest.fixture
def spans(engine: cerebelum.Engine) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_engine(engine, provider)
    return exporter


def test_spans_per_execution_and_node(engine: cerebelum.Engine, registry: cerebelum.HandlerRegistry, spans: Any) -> None:
    calls = {"n": 0}

    def flaky(data: Any) -> dict[str, int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first try fails")
        return {"n": calls["n"]}

    registry.register("ok", lambda data: {"ok": True})
    registry.register("flaky", flaky)
    retry = {"max_attempts": 2, "initial_interval_s": 0.01}
    engine.create_workflow(definition("traced", {"a": fn("ok"), "b": fn("flaky", retry=retry)}, chain("a", "b")))
    execution = engine.run("traced", {"x": 1})
    assert execution.status == "completed"

    finished = {span.name: span for span in spans.get_finished_spans()}
    assert set(finished) == {"execution traced", "node a", "node b"}
    root, a, b = finished["execution traced"], finished["node a"], finished["node b"]
    assert root.parent is None and root.status.status_code == StatusCode.OK
    assert a.parent.span_id == root.context.span_id and b.parent.span_id == root.context.span_id
    assert a.context.trace_id == root.context.trace_id == b.context.trace_id
    assert root.attributes["cerebelum.execution_id"] == execution.id and b.attributes["cerebelum.node"] == "b"
    assert root.start_time <= a.start_time < a.end_time <= b.start_time < b.end_time <= root.end_time
    assert "attempt_failed" in [e.name for e in b.events]  # the retry, on the node's span
    log = engine.events(execution.id)
    assert root.start_time == int(log[0].timestamp.timestamp() * 1e9)


def test_failure_is_the_span_status(engine: cerebelum.Engine, registry: cerebelum.HandlerRegistry, spans: Any) -> None:
    def broken(data: Any) -> None:
        raise ValueError("no luck")

    registry.register("broken", broken)
    engine.create_workflow(definition("fails", {"only": fn("broken")}))
    assert engine.run("fails", {}).status == "failed"
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["node only"].status.status_code == StatusCode.ERROR
    assert "no luck" in (finished["node only"].status.description or "")
    assert finished["execution fails"].status.status_code == StatusCode.ERROR


def test_off_unless_an_exporter_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not exporter_configured()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not exporter_configured()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert exporter_configured()


def test_worker_exports_to_the_console_when_asked(tmp_path: Any) -> None:
    """What `cerebelum serve` and `worker` call: OTEL_TRACES_EXPORTER=console prints the spans."""
    script = tmp_path / "traced.py"
    script.write_text(
        "import cerebelum\n"
        "from cerebelum.infrastructure.tracing import trace_from_environment\n"
        "engine = cerebelum.Engine('memory://', workers=0)\n"
        "engine.handlers.register('ok', lambda data: {'ok': True})\n"
        "stop = trace_from_environment(engine)\n"
        "engine.run({'name': 'w', 'entrypoint': 'a', 'nodes': {'a': {'type': 'function', 'config': {'handler': 'ok'}}}})\n"
        "engine.close()\n"
        "stop()\n"
    )
    env = {"OTEL_TRACES_EXPORTER": "console", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert '"name": "execution w"' in out.stdout and '"name": "node a"' in out.stdout

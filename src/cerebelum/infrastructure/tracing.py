"""OpenTelemetry spans built from the event log (optional).

One span per execution, as run by this process, and one per node run, its
child; retries, timers and pauses are span events. Spans are made from the
events' own timestamps as they are appended, so tracing adds no work to a
step but a span start or end. Active when the OpenTelemetry SDK is installed
(`pip install 'cerebelum[otel]'`) and either a TracerProvider is given or the
environment configures an exporter (OTEL_TRACES_EXPORTER=console|otlp, or an
OTEL_EXPORTER_OTLP_ENDPOINT). An execution that moves to another worker
continues in a new span there, linked by its `cerebelum.execution_id`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cerebelum.domain.events import Event, EventType

if TYPE_CHECKING:
    from cerebelum.engine import Engine

log = logging.getLogger(__name__)
SCOPE = "cerebelum"
_ENDED_OK = (EventType.NODE_COMPLETED,)
_ENDED_BADLY = (EventType.NODE_FAILED, EventType.NODE_CANCELLED)


def _ns(event: Event) -> int:
    return int(event.timestamp.timestamp() * 1_000_000_000)


class EventSpans:
    """An event subscriber that opens and closes spans (thread-safe)."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = tracer
        self._lock = threading.Lock()
        self._executions: dict[str, Any] = {}
        self._nodes: dict[tuple[str, str], Any] = {}

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._on(event)

    def _on(self, event: Event) -> None:
        kind, at, payload = event.type, _ns(event), event.payload
        if kind == EventType.CHECKPOINT_CREATED:
            return
        execution = self._execution(event)
        if kind == EventType.NODE_STARTED and event.node_id is not None:
            context = self._trace.set_span_in_context(execution)
            attributes: dict[str, Any] = {"cerebelum.execution_id": event.execution_id, "cerebelum.node": event.node_id}
            attempt = payload.get("attempt")
            if isinstance(attempt, int):
                attributes["cerebelum.attempt"] = attempt
            span = self._tracer.start_span(f"node {event.node_id}", context=context, start_time=at, attributes=attributes)
            self._nodes[(event.execution_id, event.node_id)] = span
        elif kind in _ENDED_OK or kind in _ENDED_BADLY:
            span = self._nodes.pop((event.execution_id, event.node_id or ""), None)
            if span is not None:
                self._end(span, at, payload.get("error") if kind in _ENDED_BADLY else None)
        elif kind in (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED):
            for key in [k for k in self._nodes if k[0] == event.execution_id]:
                self._end(self._nodes.pop(key), at, None)
            self._executions.pop(event.execution_id, None)
            self._end(execution, at, payload.get("error") if kind == EventType.EXECUTION_FAILED else None)
        elif kind != EventType.EXECUTION_STARTED:  # retries, timers, edges, pauses: events on the nearest span
            target = self._nodes.get((event.execution_id, event.node_id or ""), execution)
            target.add_event(kind, attributes=_flat(payload), timestamp=at)

    def _execution(self, event: Event) -> Any:
        span = self._executions.get(event.execution_id)
        if span is None:
            started = event.type == EventType.EXECUTION_STARTED
            name = f"execution {event.payload.get('workflow')}" if started else f"execution {event.execution_id} (resumed)"
            attributes: dict[str, Any] = {"cerebelum.execution_id": event.execution_id}
            if event.workflow_version is not None:
                attributes["cerebelum.workflow_version"] = event.workflow_version
            span = self._tracer.start_span(name, start_time=_ns(event), attributes=attributes)
            self._executions[event.execution_id] = span
        return span

    def _end(self, span: Any, at: int, error: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        if isinstance(error, dict):
            span.set_status(Status(StatusCode.ERROR, f"{error.get('kind')}: {error.get('message')}"))
        else:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=at)


def _flat(payload: dict[str, Any]) -> dict[str, Any]:
    """Span event attributes: scalars only (nested values as their text)."""
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, bool | int | float | str):
            flat[key] = value
        elif value is not None:
            flat[key] = str(value)[:500]
    return flat


def trace_engine(engine: Engine, tracer_provider: Any = None) -> Callable[[], None]:
    """Record spans for every execution `engine` runs; returns a function that stops it."""
    from opentelemetry import trace

    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    return engine.subscribe(EventSpans(provider.get_tracer(SCOPE)))


def exporter_configured() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return (exporter not in ("", "none")) or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def trace_from_environment(engine: Engine) -> Callable[[], None] | None:
    """`cerebelum serve` / `worker`: trace when the environment asks for an exporter."""
    if not exporter_configured():
        return None
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OpenTelemetry is configured but not installed: pip install 'cerebelum[otel]'")
        return None
    exporter: Any
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTLP export needs opentelemetry-exporter-otlp-proto-http; no spans are exported")
            return None
        exporter = OTLPSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    stop = trace_engine(engine, provider)

    def shutdown() -> None:
        stop()
        provider.shutdown()  # flushes what is batched

    return shutdown

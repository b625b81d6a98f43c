"""`/metrics` in the Prometheus text format (0.0.4), written by hand.

Gauges come from the queue (`store.queue.counts()`, the whole database);
counters and the node-duration histogram are kept from the events this
process appends (`engine.subscribe`), so each server reports its own work.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from cerebelum.application.handoff import pool_stats
from cerebelum.domain.events import Event, EventType
from cerebelum.engine import Engine
from cerebelum.infrastructure.deterministic.interception import REAL_DATETIME


def utc_now() -> datetime:
    return REAL_DATETIME.now(UTC)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, math.inf)
MAX_TRACKED = 100_000  # executions / nodes remembered between their start and their end
MAX_WORKFLOW_SERIES = 100  # workflow names with series of their own; the others add up under OTHER
OTHER = "other"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for index, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[index] += 1
                break


class Metrics:
    """Counters fed by the engine's change feed; `render` writes the exposition text."""

    def __init__(self, engine: Engine, max_workflows: int = MAX_WORKFLOW_SERIES) -> None:
        self.engine = engine
        self.max_workflows = max_workflows
        self._named: set[str] = set()  # the workflow names that have series of their own (first come)
        self._lock = threading.Lock()
        self.started: defaultdict[str, int] = defaultdict(int)
        self.completed: defaultdict[str, int] = defaultdict(int)
        self.failed: defaultdict[str, int] = defaultdict(int)
        self.durations: defaultdict[str, Histogram] = defaultdict(Histogram)
        self._workflow: dict[str, str] = {}  # execution id -> workflow name, until terminal
        self._nodes: dict[tuple[str, str], datetime] = {}  # running function nodes -> started at
        self._unresolved: dict[str, list[Event]] = {}  # events of executions started elsewhere
        self._unsubscribe: Callable[[], None] | None = None
        self.waits: defaultdict[str, Histogram] = defaultdict(Histogram)  # per queue: created -> got its slot
        self._waits_since = utc_now()  # slots given before this server started are not observed
        self.code_version_changes: defaultdict[tuple[str, str, str], int] = defaultdict(int)  # (from, to, reason)

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self.observe)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def observe(self, event: Event) -> None:
        """Called on the appending thread: quick, no I/O."""
        with self._lock:
            if event.type == EventType.CODE_VERSION_CHANGED:
                p = event.payload
                key = (str(p.get("from")), str(p.get("to")), str(p.get("reason")))
                if key in self.code_version_changes or len(self.code_version_changes) < MAX_CODE_VERSION_SERIES:
                    self.code_version_changes[key] += 1
                return
            if event.type == EventType.EXECUTION_STARTED:
                workflow = str(event.payload.get("workflow", "unknown"))
                if len(self._workflow) < MAX_TRACKED:
                    self._workflow[event.execution_id] = workflow
                self.started[self._series(workflow)] += 1
                return
            known = self._workflow.get(event.execution_id)
            if known is None:
                if event.type in _COUNTED and len(self._unresolved) < MAX_TRACKED:
                    self._unresolved.setdefault(event.execution_id, []).append(event)
                return
            self._apply(known, event)

    def _series(self, workflow: str) -> str:
        """The `workflow` label: the name itself for the first `max_workflows` names, else OTHER
        (so 2,000 workflow names do not make a scrape megabytes long)."""
        if workflow in self._named:
            return workflow
        if len(self._named) < self.max_workflows and workflow != OTHER:
            self._named.add(workflow)
            return workflow
        return OTHER

    def _apply(self, name: str, event: Event) -> None:
        workflow = self._series(name)
        key = (event.execution_id, event.node_id or "")
        if event.type == EventType.NODE_STARTED:
            if event.payload.get("type") == "function" and len(self._nodes) < MAX_TRACKED:
                self._nodes[key] = event.timestamp
        elif event.type == EventType.NODE_COMPLETED:
            began = self._nodes.pop(key, None)
            if began is not None:
                self.durations[workflow].observe(max(0.0, (event.timestamp - began).total_seconds()))
        elif event.type in (EventType.NODE_FAILED, EventType.NODE_CANCELLED):
            self._nodes.pop(key, None)
        elif event.type == EventType.EXECUTION_COMPLETED:
            self.completed[workflow] += 1
            self._forget(event.execution_id)
        elif event.type == EventType.EXECUTION_FAILED:
            self.failed[workflow] += 1
            self._forget(event.execution_id)

    def _forget(self, execution_id: str) -> None:
        self._workflow.pop(execution_id, None)
        for key in [k for k in self._nodes if k[0] == execution_id]:
            del self._nodes[key]

    async def _resolve(self) -> None:
        """Name the workflow of executions whose start another process wrote."""
        with self._lock:
            pending, self._unresolved = self._unresolved, {}
        for execution_id, events in pending.items():
            try:
                execution = await asyncio.to_thread(self.engine.store.executions.get, execution_id)
                workflow = execution.workflow
            except Exception:
                workflow = "unknown"
            with self._lock:
                terminal = any(e.type in _TERMINAL for e in events)
                if not terminal and len(self._workflow) < MAX_TRACKED:
                    self._workflow[execution_id] = workflow
                for event in events:
                    self._apply(workflow, event)

    async def _queues(self) -> list[str]:
        """Waiting and running per queue (the whole database), and the waiting
        times of the executions that got their slot since the last scrape."""
        store = self.engine.store
        stats = await asyncio.to_thread(store.queues.stats)
        admitted = await asyncio.to_thread(store.queues.admitted_since, self._waits_since)
        for queue, created, claimed in admitted:
            self.waits[queue if queue in self.waits or len(self.waits) < MAX_QUEUE_SERIES else OTHER].observe(
                max(0.0, (claimed - created).total_seconds())
            )
            self._waits_since = max(self._waits_since, claimed)
        names = sorted(stats)[:MAX_QUEUE_SERIES]
        lines = []
        for metric, field, help_text in (
            ("cerebelum_queue_waiting", "waiting", "Executions waiting for a slot of their queue."),
            ("cerebelum_queue_running", "running", "Executions holding a slot of their queue: started and not ended."),
        ):
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            lines += [f'{metric}{{queue="{_label(q)}"}} {getattr(stats[q], field)}' for q in names]
        name = "cerebelum_queue_wait_seconds"
        lines += [
            f"# HELP {name} Time from an execution's creation to its first claim (its slot), per queue.",
            f"# TYPE {name} histogram",
        ]
        for queue in sorted(self.waits):
            lines += _histogram(name, "queue", queue, self.waits[queue])
        return lines

    async def render(self) -> str:
        await self._resolve()
        counts = await asyncio.to_thread(self.engine.store.queue.counts)
        per_version = await asyncio.to_thread(self.engine.store.queue.per_code_version)
        lines = [
            "# HELP cerebelum_executions Executions in the database, per status.",
            "# TYPE cerebelum_executions gauge",
        ]
        statuses = sorted(k for k in counts if k not in ("parked", "leased", "expired"))
        lines += [f'cerebelum_executions{{status="{_label(s)}"}} {counts[s]}' for s in statuses]
        lines += [
            "# HELP cerebelum_executions_parked Executions waiting for a timer or a retry delay.",
            "# TYPE cerebelum_executions_parked gauge",
            f"cerebelum_executions_parked {counts.get('parked', 0)}",
            "# HELP cerebelum_leases_held Executions currently leased by a worker.",
            "# TYPE cerebelum_leases_held gauge",
            f"cerebelum_leases_held {counts.get('leased', 0)}",
            "# HELP cerebelum_leases_expired Claimed executions whose lease lapsed (a dead or stuck worker); "
            "another worker takes them over.",
            "# TYPE cerebelum_leases_expired gauge",
            f"cerebelum_leases_expired {counts.get('expired', 0)}",
        ]
        with self._lock:
            for name, help_text, values in (
                ("cerebelum_executions_started_total", "Executions started by this process.", self.started),
                ("cerebelum_executions_completed_total", "Executions completed by this process.", self.completed),
                ("cerebelum_executions_failed_total", "Executions failed in this process.", self.failed),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
                lines += [f'{name}{{workflow="{_label(w)}"}} {values[w]}' for w in sorted(values)]
            name = "cerebelum_node_duration_seconds"
            lines += [f"# HELP {name} Duration of function nodes run by this process.", f"# TYPE {name} histogram"]
            for workflow in sorted(self.durations):
                lines += _histogram(name, "workflow", workflow, self.durations[workflow])
        lines += _code_version_lines(per_version, self.code_version_changes)
        lines += await self._queues()
        name = "cerebelum_executions_left_total"
        lines += [
            f"# HELP {name} Executions this process's workers handed back because a handler they need is not registered here.",
            f"# TYPE {name} counter",
        ]
        left = sorted(self.engine.host.left_for_handler().items())
        lines += [f'{name}{{handler="{_label(h)}"}} {count}' for h, count in left[:MAX_HANDLER_LABELS]]
        ticks = self.engine.host.schedule_ticks()
        for kind, count, help_text in (
            ("started", ticks.started, "Schedule ticks whose execution this process's scheduler started."),
            ("skipped", ticks.skipped, "Schedule ticks skipped by this process's scheduler (overlap skip, or a refused start)."),
            ("late", ticks.late, "Schedule ticks started more than a second after their time (catch-up included)."),
        ):
            name = f"cerebelum_schedule_ticks_{kind}_total"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {count}"]
        lines += [
            "# HELP cerebelum_threads_abandoned Threads still running a call that was given up on (a timed-out sync "
            "handler), replaced in their pool.",
            "# TYPE cerebelum_threads_abandoned gauge",
        ]
        pools = pool_stats()
        lines += [f'cerebelum_threads_abandoned{{pool="{_label(p)}"}} {pools[p][0]}' for p in sorted(pools)]
        lines += [
            "# HELP cerebelum_threads_abandoned_max At most this many abandoned threads are replaced; past it the pool shrinks.",
            "# TYPE cerebelum_threads_abandoned_max gauge",
        ]
        lines += [f'cerebelum_threads_abandoned_max{{pool="{_label(p)}"}} {pools[p][1]}' for p in sorted(pools)]
        lines += [
            "# HELP cerebelum_threads_abandoned_total Calls given up on while their thread ran them.",
            "# TYPE cerebelum_threads_abandoned_total counter",
        ]
        lines += [f'cerebelum_threads_abandoned_total{{pool="{_label(p)}"}} {pools[p][2]}' for p in sorted(pools)]
        return "\n".join(lines) + "\n"


MAX_HANDLER_LABELS = 100
MAX_QUEUE_SERIES = 100


def _histogram(name: str, key: str, value: str, histogram: Histogram) -> list[str]:
    label = f'{key}="{_label(value)}"'
    lines, cumulative = [], 0
    for bound, count in zip(BUCKETS, histogram.counts, strict=True):
        cumulative += count
        lines.append(f'{name}_bucket{{{label},le="{_number(bound)}"}} {cumulative}')
    lines.append(f"{name}_sum{{{label}}} {histogram.sum!r}")
    lines.append(f"{name}_count{{{label}}} {histogram.count}")
    return lines


MAX_CODE_VERSION_SERIES = 100


def _code_version_lines(per_version: dict[tuple[str | None, str], int], changes: dict[tuple[str, str, str], int]) -> list[str]:
    """The gauge that tells an operator when old workers may stop, and the changes this process recorded."""
    name = "cerebelum_executions_by_code_version"
    lines = [
        f"# HELP {name} Executions not ended, per code version (\"none\": no process ran it yet) and versioning; "
        "pinned ones wait for a worker of their code version.",
        f"# TYPE {name} gauge",
    ]
    ordered = sorted(per_version.items(), key=lambda item: (item[0][0] or "", item[0][1]))
    for (version, versioning), count in ordered[:MAX_CODE_VERSION_SERIES]:
        lines.append(f'{name}{{code_version="{_label(version or "none")}",versioning="{_label(versioning)}"}} {count}')
    name = "cerebelum_code_version_changes_total"
    lines += [f"# HELP {name} code_version_changed events this process recorded.", f"# TYPE {name} counter"]
    for (old, new, reason), count in sorted(changes.items()):
        lines.append(f'{name}{{from="{_label(old)}",to="{_label(new)}",reason="{_label(reason)}"}} {count}')
    return lines


_TERMINAL = (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED)
_COUNTED = (EventType.NODE_STARTED, EventType.NODE_COMPLETED, *_TERMINAL)

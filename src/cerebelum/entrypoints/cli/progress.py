"""Live per-node progress for `cerebelum run`, drawn with Rich on a terminal."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from cerebelum.domain.events import Event, EventType

STYLES = {
    "running": "yellow",
    "retrying": "magenta",
    "waiting": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


class Progress:
    """Folds events into one row per node path; Rich re-renders it via __rich__."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: dict[str, list[str]] = {}  # path -> [status, attempt, detail]
        self.started: dict[str, float] = {}
        self.footer = "starting"
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        path, payload, kind = event.node_id, event.payload, event.type
        if kind == EventType.EXECUTION_STARTED:
            self.footer = f"{event.execution_id}  running"
        elif kind in (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED):
            self.footer = f"{event.execution_id}  {kind.split('_')[1]}"
        if path is None:
            return
        if kind == EventType.NODE_STARTED:
            self.rows[path] = ["running", "1", str(payload.get("type", ""))]
            self.started[path] = time.monotonic()
        elif path not in self.rows:
            return
        elif kind == EventType.NODE_COMPLETED:
            elapsed = time.monotonic() - self.started.get(path, time.monotonic())
            self.rows[path][0] = "completed"
            self.rows[path][2] = f"{self.rows[path][2]}  {elapsed:.2f}s"
        elif kind == EventType.ATTEMPT_FAILED and payload.get("retry_at"):
            self.rows[path][:3] = ["retrying", str(payload["attempt"] + 1), payload["error"]["message"][:60]]
        elif kind == EventType.TIMER_STARTED:
            self.rows[path][0:3:2] = ["waiting", f"until {payload['fires_at']}"]
        elif kind == EventType.TIMER_FIRED:
            self.rows[path][0] = "running"
        elif kind == EventType.NODE_FAILED:
            self.rows[path][0:3:2] = ["failed", payload["error"]["message"][:80]]
        elif kind == EventType.NODE_CANCELLED:
            self.rows[path][0] = "cancelled"

    def __rich__(self) -> RenderableType:
        table = Table(title=self.title, expand=False)
        for column in ("node", "status", "attempt", "detail"):
            table.add_column(column)
        with self._lock:
            for path, (status, attempt, detail) in self.rows.items():
                table.add_row(path, Text(status, style=STYLES.get(status, "")), attempt, detail)
            footer = self.footer
        return Group(table, Text(footer, style="bold"))


def stderr_console() -> Console:
    return Console(stderr=True)

"""PostgreSQL LISTEN/NOTIFY: other processes' appends and released work, as
wake-ups for this one. Appends NOTIFY inside their transaction, so a
notification arrives only once the events it announces are committed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from cerebelum.infrastructure.deterministic.interception import REAL_SLEEP
from cerebelum.infrastructure.sql.database import EVENTS_CHANNEL, QUEUE_CHANNEL, normalize_url

log = logging.getLogger("cerebelum.listener")
OnEvents = Callable[[str, str | None], None]  # execution id whose log grew, owner of the lease that appended
OnQueue = Callable[[], None]  # work may be claimable


class PgListener:
    """A daemon thread holding one LISTEN connection; reconnects with backoff."""

    def __init__(self, url: str, on_events: OnEvents, on_queue: OnQueue) -> None:
        parsed = normalize_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._on_events = on_events
        self._on_queue = on_queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cerebelum-listen", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    self.connected.set()
                    delay = 0.1
                    self._on_queue()  # anything released while we were away
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.channel == EVENTS_CHANNEL:
                                execution_id, _, _, owner = [*note.payload.split(" "), "", "", ""][:4]
                                self._on_events(execution_id, owner or None)
                            else:
                                self._on_queue()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); retrying in %.1fs", exc, delay)
                REAL_SLEEP(delay)
                delay = min(delay * 2, 10.0)

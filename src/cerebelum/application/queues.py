"""Use cases of queues and flow control (spec section 9): set, list, show and
delete a queue's limits. The limits themselves are applied by the store's
claim (`ExecutionQueue.claim`), so every worker on every machine obeys them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cerebelum.domain.events import rfc3339
from cerebelum.domain.ports import Store
from cerebelum.domain.queues import (
    DEFAULT_QUEUE,
    InvalidSetting,
    QueueSettings,
    QueueStats,
    check_queue_name,
    queue_settings,
)


@dataclass(frozen=True)
class QueueView:
    """A queue's settings and what it holds now."""

    settings: QueueSettings
    stats: QueueStats

    def to_json(self) -> dict[str, Any]:
        oldest = self.stats.oldest_waiting
        return {
            **self.settings.to_json(),
            "waiting": self.stats.waiting,
            "running": self.stats.running,
            "oldest_waiting": rfc3339(oldest) if oldest is not None else None,
        }


def serving(queues: Collection[str] | None) -> tuple[str, ...] | None:
    """The queues a worker serves, checked (None or empty: all)."""
    if not queues:
        return None
    if isinstance(queues, str):
        queues = [queues]
    return tuple(sorted({check_queue_name(name, "queues") for name in queues}))


def set_queue(store: Store, name: Any, concurrency: Any = None, per_key_concurrency: Any = None, rate: Any = None) -> QueueView:
    """Create or replace a queue's limits (None = unlimited); the next claim obeys them."""
    settings = store.queues.put(queue_settings(name, concurrency, per_key_concurrency, rate))
    return QueueView(settings, store.queues.stats([settings.name]).get(settings.name, QueueStats()))


def list_queues(store: Store) -> list[QueueView]:
    """Every queue with settings or with executions not ended, by name."""
    settings = {s.name: s for s in store.queues.all()}
    stats = store.queues.stats()
    names = sorted({*settings, *stats, DEFAULT_QUEUE})
    return [QueueView(settings.get(n) or QueueSettings(n), stats.get(n, QueueStats())) for n in names]


def show_queue(store: Store, name: Any) -> QueueView:
    """One queue; InvalidSetting (`name`) for a queue with neither settings nor executions."""
    check_queue_name(name, "name")
    settings = store.queues.get(name)
    stats = store.queues.stats([name]).get(name)
    if settings is None and stats is None and name != DEFAULT_QUEUE:
        raise InvalidSetting("name", f"unknown queue '{name}': it has no settings and no executions waiting or running")
    return QueueView(settings or QueueSettings(name), stats or QueueStats())


def delete_queue(store: Store, name: Any) -> None:
    """Forget a queue's limits: its executions are unlimited from the next claim on."""
    store.queues.delete(check_queue_name(name, "name"))

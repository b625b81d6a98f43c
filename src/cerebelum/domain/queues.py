"""Queues and flow control (spec section 9): the values and their checks.

Every execution belongs to a queue (`default` unless chosen). A queue's
settings are stored rows; a queue without a row, or with every limit null,
is unlimited. What the limits mean is decided in one place, the claim of the
queue adapters; this module only says what a valid setting is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import CerebelumError

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 500
PRIORITY_MIN, PRIORITY_MAX = 1, 1000
MAX_CONCURRENCY_KEY = 200
MAX_LIMIT = 1_000_000  # concurrency, per-key concurrency, rate count
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
QUEUE_NAME_RULE = "1-100 characters of [A-Za-z0-9_.:-]"
PERIODS = {"s": 1, "m": 60, "h": 3600}
RATE_RE = re.compile(r"^\s*([0-9]+)\s*/\s*([smh])\s*$")
RATE_RULE = "N/s, N/m or N/h with N a whole number >= 1 (e.g. 60/m)"


class InvalidSetting(CerebelumError):
    """A queue name, limit, priority or key that is not valid; `location` names the field."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


@dataclass(frozen=True)
class Rate:
    """At most `count` executions start per `period_s` seconds (a sliding window)."""

    count: int
    period_s: int

    def __str__(self) -> str:
        unit = next(u for u, seconds in PERIODS.items() if seconds == self.period_s)
        return f"{self.count}/{unit}"


@dataclass(frozen=True)
class QueueSettings:
    """A queue's limits; None = unlimited."""

    name: str
    concurrency: int | None = None
    per_key_concurrency: int | None = None
    rate: Rate | None = None
    updated_at: datetime | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.per_key_concurrency is not None or self.rate is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "per_key_concurrency": self.per_key_concurrency,
            "rate": str(self.rate) if self.rate is not None else None,
        }


@dataclass(frozen=True)
class QueueStats:
    """What a queue holds now: executions waiting for a slot, holding one, and
    the creation time of the oldest waiting one."""

    waiting: int = 0
    running: int = 0
    oldest_waiting: datetime | None = None


def check_queue_name(name: Any, location: str = "queue") -> str:
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise InvalidSetting(location, f"must be {QUEUE_NAME_RULE}")
    return name


def check_priority(priority: Any, location: str = "priority") -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidSetting(location, f"must be a whole number from {PRIORITY_MIN} (first) to {PRIORITY_MAX} (last)")
    return priority


def check_concurrency_key(key: Any, location: str = "concurrency_key") -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_CONCURRENCY_KEY or "\x00" in key:
        raise InvalidSetting(location, f"must be 1-{MAX_CONCURRENCY_KEY} characters (no NUL)")
    return key


def check_limit(value: Any, location: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidSetting(location, f"must be a whole number from 1 to {MAX_LIMIT}, or null for unlimited")
    return value


def parse_rate(value: Any, location: str = "rate") -> Rate | None:
    """`"60/m"` -> Rate(60, 60); None stays None (unlimited)."""
    if value is None:
        return None
    match = RATE_RE.match(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(1)) <= MAX_LIMIT:
        raise InvalidSetting(location, f"must be {RATE_RULE}, up to {MAX_LIMIT} per period, or null for unlimited")
    return Rate(int(match.group(1)), PERIODS[match.group(2)])


def queue_settings(name: Any, concurrency: Any = None, per_key_concurrency: Any = None, rate: Any = None) -> QueueSettings:
    """Checked settings (InvalidSetting naming the first bad field)."""
    return QueueSettings(
        check_queue_name(name, "name"),
        check_limit(concurrency, "concurrency"),
        check_limit(per_key_concurrency, "per_key_concurrency"),
        rate if isinstance(rate, Rate) else parse_rate(rate),
    )

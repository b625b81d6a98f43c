"""The real clock and id source: the only places that read the wall clock or uuid4."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidSource:
    def new_id(self) -> str:
        return str(uuid.uuid4())

"""The real clock and id source: the only places that read the wall clock or uuid4.

They use the functions captured before interception is installed, so they
stay real even when called from inside a step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cerebelum.infrastructure.deterministic.interception import REAL_DATETIME, REAL_SLEEP, REAL_UUID4


class SystemClock:
    def now(self) -> datetime:
        return REAL_DATETIME.now(UTC)

    def sleep(self, seconds: float) -> None:
        REAL_SLEEP(seconds)


class UuidSource:
    def new_id(self) -> str:
        return str(REAL_UUID4())

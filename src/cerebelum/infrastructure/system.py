"""The real clock and id source: the only places that read the wall clock or uuid4.

They use the functions captured before interception is installed, so they
stay real even when called from inside a step.
"""

from __future__ import annotations

import os
import random
import uuid as _uuid
from datetime import UTC, datetime

from cerebelum.infrastructure.deterministic.interception import REAL_DATETIME, REAL_SLEEP, REAL_UUID4


class SystemClock:
    def now(self) -> datetime:
        return REAL_DATETIME.now(UTC)

    def sleep(self, seconds: float) -> None:
        REAL_SLEEP(seconds)


class UuidSource:
    """Random (version 4) uuids for ids, from a generator seeded by the OS once
    per process (and again in a forked child): ids must be unique, not secret,
    and reading os.urandom for each of the several ids a step makes costs more
    than the rest of making them."""

    def new_id(self) -> str:
        return str(_uuid.UUID(int=_IDS.getrandbits(128), version=4))


def _reseed() -> None:
    _IDS.seed(REAL_UUID4().int)


_IDS = random.Random()  # an instance of its own: interception replaces only the module's functions
_reseed()
os.register_at_fork(after_in_child=_reseed)

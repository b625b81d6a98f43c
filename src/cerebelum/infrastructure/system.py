"""The real clock and id source: the only places that read the wall clock or uuid4.

They use the functions captured before interception is installed, so they
stay real even when called from inside a step.
"""

from __future__ import annotations

import os
import random
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
        """As `str(uuid.UUID(int=..., version=4))`, without building the UUID object."""
        n = (_IDS.getrandbits(128) & _CLEAR_VERSION_VARIANT) | _VERSION_4_VARIANT_RFC
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_CLEAR_VERSION_VARIANT = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4_VARIANT_RFC = (4 << 76) | (0x8000 << 48)


def _reseed() -> None:
    _IDS.seed(REAL_UUID4().int)


_IDS = random.Random()  # an instance of its own: interception replaces only the module's functions
_reseed()
os.register_at_fork(after_in_child=_reseed)

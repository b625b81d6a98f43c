"""Ids: version 4 uuids, formatted without the uuid module on the hot path."""

from __future__ import annotations

import random
import uuid

from cerebelum.infrastructure import system


def test_ids_are_the_uuid_module_s_version_4_uuids_of_the_same_bits() -> None:
    drawn = random.Random(11)
    system._IDS.seed(11)
    try:
        source = system.UuidSource()
        for _ in range(20_000):
            made = source.new_id()
            expected = uuid.UUID(int=drawn.getrandbits(128), version=4)
            assert made == str(expected)
            assert uuid.UUID(made).version == 4 and uuid.UUID(made).variant == uuid.RFC_4122
    finally:
        system._reseed()  # later tests must not get predictable ids


def test_ids_do_not_repeat() -> None:
    source = system.UuidSource()
    assert len({source.new_id() for _ in range(50_000)}) == 50_000

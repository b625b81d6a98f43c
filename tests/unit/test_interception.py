"""Transparent interception of the stdlib's clocks, `asyncio.sleep`, `random`
(module functions and unseeded `random.Random()`), `uuid1` and `uuid4`.

Outside a step every intercepted function behaves as the real one; inside a
step (a handler run by the engine) it is served by the execution's
deterministic, recorded services: virtual time, per-node-run randomness.
Handlers here call the plain stdlib functions, never `ctx.*`.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import importlib.util
import os
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import chain, definition, fn

import cerebelum
from cerebelum.infrastructure.deterministic import interception

DAY = 86_400.0
THIRTY_DAYS = 30 * DAY
RANDOM_KEYS = ("random", "randint", "choice", "shuffle", "uniform", "sample", "uuid")
TZ_PLUS5 = datetime.timezone(datetime.timedelta(hours=5))


# -- helpers ------------------------------------------------------------------


def probe(ctx: cerebelum.StepContext) -> dict[str, Any]:
    """Every intercepted function, called the plain way."""
    mono0, perf0 = time.monotonic(), time.perf_counter()
    t0 = time.time()
    time.sleep(3600)
    t1 = time.time()
    mono1, perf1 = time.monotonic(), time.perf_counter()
    deck = list(range(20))
    random.shuffle(deck)
    return {
        "time": t0,
        "after_sleep": t1,
        "time_ns": time.time_ns(),
        "now_naive": datetime.datetime.now().isoformat(),
        "now_utc": datetime.datetime.now(datetime.UTC).isoformat(),
        "now_tz": datetime.datetime.now(TZ_PLUS5).isoformat(),
        "utcnow": datetime.datetime.utcnow().isoformat(),
        "today": datetime.date.today().isoformat(),
        "now_is_datetime": isinstance(datetime.datetime.now(), datetime.datetime),
        "random": random.random(),
        "randint": random.randint(1, 10**9),
        "choice": random.choice("abcdefghijklmnopqrstuvwxyz"),
        "shuffle": deck,
        "uniform": random.uniform(-5.0, 5.0),
        "sample": random.sample(range(1000), 5),
        "uuid": str(uuid.uuid4()),
        "mono_delta": mono1 - mono0,
        "perf_delta": perf1 - perf0,
    }


def probe_workflow(name: str = "probe") -> dict[str, Any]:
    """probe -> 30-day delay -> probe again."""
    nodes = {"before": fn("probe"), "wait": {"type": "delay", "config": {"seconds": THIRTY_DAYS}}, "after": fn("probe")}
    return definition(name, nodes, chain("before", "wait", "after"), output="results")


def run_probe(seed: int, func: Callable[..., Any] = probe, intercept: bool = True) -> tuple[dict[str, Any], list[Any], Any]:
    registry = cerebelum.HandlerRegistry()
    registry.register("probe", func, intercept=intercept)
    with cerebelum.Engine("memory://", handlers=registry, virtual_time=True, seed=seed) as engine:
        execution = engine.run(probe_workflow(), {})
        log = engine.events(execution.id)
    assert execution.status == "completed", execution.error
    return execution.output, log, execution


def started_at(log: list[Any]) -> float:
    return datetime.datetime.fromisoformat(log[0].payload["started_at"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def seeded() -> dict[str, Any]:
    """Three runs of the probe workflow: seed 11 twice, seed 12 once (memory, virtual time)."""
    first = run_probe(11)
    second = run_probe(11)
    other = run_probe(12)
    return {"first": first, "second": second, "other": other}


# -- installation -------------------------------------------------------------


def test_interception_is_installed_at_import():
    assert interception.installed()
    assert time.time is not interception.REAL_TIME
    assert time.time_ns is not interception.REAL_TIME_NS
    assert time.sleep is not interception.REAL_SLEEP
    assert uuid.uuid4 is not interception.REAL_UUID4
    assert datetime.datetime is not interception.REAL_DATETIME
    assert datetime.date is not interception.REAL_DATE
    for name in ("random", "randint", "choice", "shuffle", "uniform", "sample", "getrandbits"):
        assert getattr(random, name) is not interception.REAL_RANDOM[name], name


def test_the_calls_that_read_the_clock_or_entropy_unasked_are_installed_too():
    assert asyncio.sleep is not interception.REAL_ASYNCIO_SLEEP
    assert asyncio.tasks.sleep is asyncio.sleep
    assert time.localtime is not interception.REAL_LOCALTIME
    assert time.gmtime is not interception.REAL_GMTIME
    assert time.ctime is not interception.REAL_CTIME
    assert time.asctime is not interception.REAL_ASCTIME
    assert time.strftime is not interception.REAL_STRFTIME
    assert uuid.uuid1 is not interception.REAL_UUID1
    assert random.Random.seed is not interception.REAL_RANDOM_SEED
    assert asyncio.iscoroutinefunction(asyncio.sleep)


def test_monotonic_and_perf_counter_are_not_intercepted():
    assert time.monotonic.__module__ == "time" and time.monotonic.__name__ == "monotonic"
    assert time.perf_counter.__module__ == "time" and time.perf_counter.__name__ == "perf_counter"
    assert type(time.monotonic).__name__ == "builtin_function_or_method"
    assert type(time.perf_counter).__name__ == "builtin_function_or_method"


# -- outside a step: the real thing ---------------------------------------------


def test_time_functions_outside_a_step_are_the_real_clock():
    real = time.clock_gettime(time.CLOCK_REALTIME)  # not intercepted: an independent source
    assert abs(time.time() - real) < 1.0
    assert abs(time.time_ns() / 1e9 - real) < 1.0
    assert time.time_ns() > 0 and isinstance(time.time_ns(), int)


def test_time_sleep_outside_a_step_really_sleeps():
    started = time.monotonic()
    time.sleep(0.05)
    assert time.monotonic() - started >= 0.045


def test_datetime_functions_outside_a_step_are_the_real_clock():
    real = interception.REAL_DATETIME.now(datetime.UTC)
    aware = datetime.datetime.now(datetime.UTC)
    assert abs((aware - real).total_seconds()) < 1.0
    assert aware.tzinfo is not None
    naive = datetime.datetime.now()
    assert naive.tzinfo is None
    assert abs((naive - interception.REAL_DATETIME.now()).total_seconds()) < 1.0
    plus5 = datetime.datetime.now(TZ_PLUS5)
    assert plus5.utcoffset() == datetime.timedelta(hours=5)
    assert abs((plus5 - real).total_seconds()) < 1.0
    utc_naive = datetime.datetime.utcnow()
    assert utc_naive.tzinfo is None
    assert abs((utc_naive - real.replace(tzinfo=None)).total_seconds()) < 1.0
    assert datetime.date.today() in (interception.REAL_DATE.today(), interception.REAL_DATE.today() - datetime.timedelta(1))


def test_random_outside_a_step_is_the_global_generator():
    saved = random.getstate()
    try:
        random.seed(1234)
        expected = interception.REAL_RANDOM["random"]  # the real module function, same global generator
        reference = random.Random(1234)
        assert random.random() == reference.random()
        assert random.randint(1, 10**9) == reference.randint(1, 10**9)
        assert random.choice("abcdef") == reference.choice("abcdef")
        deck, ref_deck = list(range(20)), list(range(20))
        random.shuffle(deck)
        reference.shuffle(ref_deck)
        assert deck == ref_deck
        assert random.uniform(-5, 5) == reference.uniform(-5, 5)
        assert random.sample(range(1000), 5) == reference.sample(range(1000), 5)
        assert expected() == reference.random()
    finally:
        random.setstate(saved)
    # not seeded by anything of ours: successive values differ
    assert len({random.random() for _ in range(10)}) == 10


def test_uuid4_outside_a_step_is_random():
    values = {uuid.uuid4() for _ in range(10)}
    assert len(values) == 10
    assert all(v.version == 4 for v in values)


def test_clock_readers_outside_a_step_are_the_real_clock():
    real = time.clock_gettime(time.CLOCK_REALTIME)
    assert abs(time.mktime(time.localtime()) - real) < 2
    assert abs(calendar.timegm(time.gmtime()) - real) < 2
    assert abs(time.mktime(time.strptime(time.ctime())) - real) < 2
    assert abs(time.mktime(time.strptime(time.asctime())) - real) < 2
    assert abs(time.mktime(time.strptime(time.strftime("%Y-%m-%d %H:%M:%S"), "%Y-%m-%d %H:%M:%S")) - real) < 2
    # with a time argument: the real functions, whatever the argument
    assert time.gmtime(0)[:6] == (1970, 1, 1, 0, 0, 0)
    assert time.localtime(86_400) == interception.REAL_LOCALTIME(86_400)
    assert time.ctime(0) == interception.REAL_CTIME(0)
    assert time.localtime(None)[:5] == interception.REAL_LOCALTIME()[:5]
    assert time.strftime("%Y", time.gmtime(0)) == "1970"
    assert time.asctime(time.gmtime(0)) == interception.REAL_ASCTIME(interception.REAL_GMTIME(0))


def test_uuid1_and_unseeded_random_outside_a_step_are_the_real_ones():
    values = [uuid.uuid1() for _ in range(5)]
    assert len(set(values)) == 5 and all(v.version == 1 for v in values)
    assert values[0].node == uuid.getnode()  # the real uuid1's node
    assert abs((values[0].time - 0x01B21DD213814000) / 1e7 - time.clock_gettime(time.CLOCK_REALTIME)) < 5
    assert uuid.uuid1(node=7, clock_seq=9).node == 7
    assert random.Random().random() != random.Random().random()  # seeded from the OS
    assert random.Random(5).random() == random.Random(5).random()
    saved = random.Random(5)
    saved.seed()
    assert saved.random() != random.Random(5).random()


def test_asyncio_sleep_outside_a_step_really_waits():
    async def main() -> tuple[float, Any]:
        started = time.monotonic()
        value = await asyncio.sleep(0.05, result="r")
        return time.monotonic() - started, value

    waited, value = asyncio.run(main())
    assert waited >= 0.045 and value == "r"


def test_steps_do_not_consume_the_global_generator():
    """A handler's random calls are served by its step, not the process-wide generator."""
    run_probe(5)  # first: lazy imports (rich draws from the global generator when imported)
    saved = random.getstate()
    try:
        random.seed(99)
        run_probe(5)
        assert random.random() == random.Random(99).random()
    finally:
        random.setstate(saved)


# -- the patched classes stay usable --------------------------------------------


def test_patched_datetime_classes_behave_like_the_real_ones():
    real = interception.REAL_DATETIME(2020, 1, 1, 12, 30)
    assert isinstance(real, datetime.datetime)
    assert isinstance(real, datetime.date)
    assert isinstance(interception.REAL_DATE(2020, 1, 1), datetime.date)
    assert not isinstance(interception.REAL_DATE(2020, 1, 1), datetime.datetime)
    assert isinstance(datetime.datetime.now(), datetime.datetime)
    assert isinstance(datetime.datetime.now(datetime.UTC), datetime.datetime)
    assert isinstance(datetime.date.today(), datetime.date)
    assert issubclass(interception.REAL_DATETIME, datetime.datetime)
    built = datetime.datetime(2020, 1, 1)
    assert isinstance(built, datetime.datetime)
    assert built == interception.REAL_DATETIME(2020, 1, 1)
    assert datetime.datetime(2020, 1, 2) - built == datetime.timedelta(days=1)
    assert datetime.date(2020, 1, 1) == interception.REAL_DATE(2020, 1, 1)
    assert datetime.datetime.fromisoformat("2020-01-01T00:00:00+00:00") == built.replace(tzinfo=datetime.UTC)
    assert datetime.datetime.fromtimestamp(0, datetime.UTC) == datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


# -- inside a step: deterministic and virtual ------------------------------------


def test_random_and_uuid_inside_a_step_repeat_for_a_seed_and_change_with_it(seeded):
    first, second, other = seeded["first"][0], seeded["second"][0], seeded["other"][0]
    for node in ("before", "after"):
        for key in RANDOM_KEYS:
            assert first[node][key] == second[node][key], (node, key)
            assert first[node][key] != other[node][key], (node, key)
    # different node runs draw different values
    for key in ("random", "randint", "uuid", "uniform"):
        assert first["before"][key] != first["after"][key]
    assert sorted(first["before"]["shuffle"]) == list(range(20))
    assert first["before"]["shuffle"] != list(range(20))
    assert all(0 <= v < 1000 for v in first["before"]["sample"]) and len(set(first["before"]["sample"])) == 5
    assert -5 <= first["before"]["uniform"] <= 5
    assert uuid.UUID(first["before"]["uuid"]).version == 4


def test_stdlib_calls_inside_a_step_are_recorded(seeded):
    _, log, _ = seeded["first"]
    (done,) = [e for e in log if e.type == "node_completed" and e.node_id == "before"]
    ops = [r["op"] for r in done.payload["recorded"]]
    assert ops[:3] == ["now", "sleep", "now"]
    for op in ("random.random", "random.randint", "random.choice", "shuffle", "random.uniform", "random.sample", "uuid4"):
        assert op in ops, op
    assert {"op": "sleep", "value": 3600} in done.payload["recorded"]


def test_time_inside_a_step_is_the_virtual_clock(seeded):
    out, log, _ = seeded["first"]
    before, after = out["before"], out["after"]
    start = started_at(log)
    # the virtual clock starts at the real time the execution started
    assert before["time"] == pytest.approx(start, abs=0.002)
    assert abs(before["time"] - time.time()) < 120
    # time.sleep advanced it by exactly the hour slept, without waiting
    assert before["after_sleep"] - before["time"] == pytest.approx(3600, abs=0.002)
    assert before["mono_delta"] < 5 and before["perf_delta"] < 5  # monotonic/perf_counter stay real
    # after the 30-day delay the handler sees 30 days (and the hour) later
    assert after["time"] - before["time"] == pytest.approx(THIRTY_DAYS + 3600, abs=0.002)
    assert after["time_ns"] / 1e9 == pytest.approx(after["after_sleep"], abs=0.002)


def test_datetime_inside_a_step_is_the_virtual_clock(seeded):
    out, _, _ = seeded["first"]
    for node in ("before", "after"):
        seen = out[node]
        moment = interception.REAL_DATETIME.fromtimestamp(seen["after_sleep"], datetime.UTC)
        now_utc = datetime.datetime.fromisoformat(seen["now_utc"])
        assert abs((now_utc - moment).total_seconds()) < 0.002
        assert now_utc.utcoffset() == datetime.timedelta(0)
        now_tz = datetime.datetime.fromisoformat(seen["now_tz"])
        assert now_tz.utcoffset() == datetime.timedelta(hours=5)
        assert abs((now_tz - moment).total_seconds()) < 0.002
        naive = datetime.datetime.fromisoformat(seen["now_naive"])
        assert naive.tzinfo is None
        assert abs((naive - moment.astimezone().replace(tzinfo=None)).total_seconds()) < 0.002
        utcnow = datetime.datetime.fromisoformat(seen["utcnow"])
        assert utcnow.tzinfo is None
        assert abs((utcnow - moment.replace(tzinfo=None)).total_seconds()) < 0.002
        assert seen["today"] == moment.astimezone().date().isoformat()
        assert seen["now_is_datetime"] is True
    days = datetime.date.fromisoformat(out["after"]["today"]) - datetime.date.fromisoformat(out["before"]["today"])
    assert days.days in (30, 31)  # the hour slept may cross midnight


def test_time_offsets_inside_a_step_repeat_across_runs(seeded):
    first_out, first_log, _ = seeded["first"]
    second_out, second_log, _ = seeded["second"]
    for key in ("time", "after_sleep"):
        for node in ("before", "after"):
            a = first_out[node][key] - started_at(first_log)
            b = second_out[node][key] - started_at(second_log)
            assert a == pytest.approx(b, abs=0.002), (node, key)


def test_real_time_step_sees_the_real_clock_and_records_it():
    seen: dict[str, float] = {}

    def real(ctx):
        seen["t0"], seen["m0"] = time.time(), time.monotonic()
        time.sleep(0.05)  # a real-time step really waits
        seen["t1"], seen["m1"] = time.time(), time.monotonic()
        return {"t0": seen["t0"], "t1": seen["t1"]}

    registry = cerebelum.HandlerRegistry()
    registry.register("real", real)
    with cerebelum.Engine("memory://", handlers=registry, virtual_time=False, seed=3) as engine:
        execution = engine.run(definition("realtime", {"r": fn("real")}), {})
        log = engine.events(execution.id)
    assert execution.status == "completed", execution.error
    assert abs(seen["t0"] - time.clock_gettime(time.CLOCK_REALTIME)) < 5
    assert seen["m1"] - seen["m0"] >= 0.045
    assert seen["t1"] - seen["t0"] >= 0.045
    (done,) = [e for e in log if e.type == "node_completed"]
    assert [r["op"] for r in done.payload["recorded"]] == ["now", "sleep", "now"]


# -- asyncio.sleep, the time module's clock readers, Random(), uuid1 inside a step ------

UUID1_EPOCH_TICKS = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
STAMP = "%Y-%m-%d %H:%M:%S"


def uuid1_seconds(value: str) -> float:
    return (uuid.UUID(value).time - UUID1_EPOCH_TICKS) / 1e7


async def clock_probe(ctx: cerebelum.StepContext) -> dict[str, Any]:
    """Every call this issue intercepts, called the plain way from an async handler."""
    mono0 = time.monotonic()
    t0 = time.time()
    slept = await asyncio.sleep(3600, result="slept")
    t1 = time.time()
    await asyncio.sleep(0)  # a yield: neither served nor recorded
    mine, theirs = random.Random(), random.Random()
    reseeded = random.Random(1)
    reseeded.seed()
    return {
        "t0": t0,
        "t1": t1,
        "slept": slept,
        "mono_delta": time.monotonic() - mono0,
        "localtime": calendar.timegm(time.localtime()) - time.localtime().tm_gmtoff,
        "gmtime": calendar.timegm(time.gmtime()),
        "ctime": time.ctime(),
        "asctime": time.asctime(),
        "strftime": time.strftime(STAMP),
        "gmtime_0": list(time.gmtime(0)[:6]),
        "strftime_0": time.strftime(STAMP, time.gmtime(0)),
        "rng": [mine.random(), mine.randint(0, 10**9), theirs.random()],
        "reseeded": reseeded.random(),
        "explicit": random.Random(42).random(),
        "getrandbits": str(random.getrandbits(64)),  # returned as text: outputs keep to 64-bit integers
        "uuid1": [str(uuid.uuid1()), str(uuid.uuid1()), str(uuid.uuid1(node=0xABC, clock_seq=5))],
        "system": random.SystemRandom().random(),
        "urandom": os.urandom(8).hex(),
        "secret": secrets.token_hex(8),
    }


@pytest.fixture(scope="module")
def clocked() -> dict[str, Any]:
    """The clock probe through a 30-day delay: seed 41 twice, seed 42 once (memory, virtual time)."""
    started = time.monotonic()
    first = run_probe(41, clock_probe)
    elapsed = time.monotonic() - started
    return {"first": first, "second": run_probe(41, clock_probe), "other": run_probe(42, clock_probe), "elapsed": elapsed}


def test_asyncio_sleep_in_a_step_under_virtual_time_is_instant_and_moves_the_clock(clocked):
    out, log, _ = clocked["first"]
    before, after = out["before"], out["after"]
    assert clocked["elapsed"] < 30 and before["mono_delta"] < 5  # two hour-long sleeps, no real wait
    assert before["t0"] == pytest.approx(started_at(log), abs=0.002)
    assert before["t1"] - before["t0"] == pytest.approx(3600, abs=0.002)
    assert before["slept"] == "slept"  # asyncio.sleep's result argument
    assert after["t0"] - before["t0"] == pytest.approx(3600 + THIRTY_DAYS, abs=0.002)
    (done,) = [e for e in log if e.type == "node_completed" and e.node_id == "before"]
    # recorded like time.sleep; the clock the event carries moved by the hour
    ops = [r["op"] for r in done.payload["recorded"]]
    assert ops[:3] == ["now", "sleep", "now"] and ops.count("sleep") == 1  # asyncio.sleep(0) is not recorded
    assert {"op": "sleep", "value": 3600} in done.payload["recorded"]
    clock = datetime.datetime.fromisoformat(done.payload["clock"].replace("Z", "+00:00")).timestamp()
    assert clock == pytest.approx(before["t1"], abs=0.002)


def test_time_module_clock_readers_in_a_step_read_the_execution_clock(clocked):
    out, _, _ = clocked["first"]
    for node in ("before", "after"):
        seen = out[node]
        now = seen["t1"]  # nothing moves the virtual clock after the sleep
        assert seen["localtime"] == int(now) and seen["gmtime"] == int(now)
        local = interception.REAL_LOCALTIME(now)
        assert seen["ctime"] == interception.REAL_CTIME(now) == seen["asctime"]
        assert seen["strftime"] == interception.REAL_STRFTIME(STAMP, local)
        # with a time argument: unchanged
        assert seen["gmtime_0"] == [1970, 1, 1, 0, 0, 0] and seen["strftime_0"] == "1970-01-01 00:00:00"
    moved = out["after"]["gmtime"] - out["before"]["gmtime"]
    assert moved == pytest.approx(THIRTY_DAYS + 3600, abs=1)  # 30 days (and the hour) on, in no real time
    _, log, _ = clocked["first"]
    (done,) = [e for e in log if e.type == "node_completed" and e.node_id == "before"]
    assert [r["op"] for r in done.payload["recorded"]].count("now") == 2 + 6  # t0, t1 and each reader


def test_unseeded_random_instances_and_uuid1_in_a_step_repeat_for_a_seed(clocked):
    first, second, other = clocked["first"][0], clocked["second"][0], clocked["other"][0]

    def uuid1_parts(run: tuple[dict[str, Any], list[Any], Any], node: str) -> list[tuple[float, int, int]]:
        """Each uuid1 as (offset from the execution's start, node, clock sequence)."""
        values = [uuid.UUID(v) for v in run[0][node]["uuid1"]]
        return [(round(uuid1_seconds(str(v)) - started_at(run[1]), 3), v.node, v.clock_seq) for v in values]

    for node in ("before", "after"):
        for key in ("rng", "reseeded", "getrandbits"):
            assert first[node][key] == second[node][key], (node, key)
            assert first[node][key] != other[node][key], (node, key)
        assert first[node]["explicit"] == random.Random(42).random()  # an explicit seed is left alone
        assert uuid1_parts(clocked["first"], node) == uuid1_parts(clocked["second"], node)
        assert uuid1_parts(clocked["first"], node)[:2] != uuid1_parts(clocked["other"], node)[:2]
    assert first["before"]["rng"] != first["after"]["rng"]
    assert first["before"]["rng"][0] != first["before"]["rng"][2]  # two instances, two seeds
    assert first["before"]["uuid1"] != first["after"]["uuid1"]


def test_uuid1_in_a_step_carries_the_execution_clock(clocked):
    out, _, _ = clocked["first"]
    for node in ("before", "after"):
        one, two, fixed = (uuid.UUID(v) for v in out[node]["uuid1"])
        assert {one.version, two.version, fixed.version} == {1}
        assert uuid1_seconds(str(one)) == pytest.approx(out[node]["t1"], abs=0.002)
        assert two.time > one.time  # increasing within the step, even at one instant of virtual time
        assert one.node & (1 << 40) and one.node != uuid.getnode()  # a drawn node, not the MAC
        assert (fixed.node, fixed.clock_seq) == (0xABC, 5)


def test_secure_sources_stay_random_and_unrecorded(clocked):
    first, second = clocked["first"], clocked["second"]
    for key in ("system", "urandom", "secret"):
        assert first[0]["before"][key] != second[0]["before"][key], key
    (done,) = [e for e in first[1] if e.type == "node_completed" and e.node_id == "before"]
    ops = [r["op"] for r in done.payload["recorded"]]
    assert ops.count("random.Random") == 3  # mine, theirs, and reseeded.seed(); not SystemRandom
    assert ops.count("uuid1") == 3 and ops.count("random.getrandbits") == 1


def test_asyncio_sleep_in_a_real_time_step_waits_and_is_recorded_once():
    async def real(ctx):
        started = time.monotonic()
        await asyncio.sleep(0.05)
        await ctx.sleep(0.02)  # ctx.sleep in an async handler: recorded once, not again by asyncio.sleep
        await asyncio.sleep(0)
        return {"waited": time.monotonic() - started, "stamp": time.strftime(STAMP), "uuid1": str(uuid.uuid1())}

    registry = cerebelum.HandlerRegistry()
    registry.register("real", real)
    with cerebelum.Engine("memory://", handlers=registry, virtual_time=False, seed=3) as engine:
        execution = engine.run(definition("realtime_async", {"r": fn("real")}), {})
        log = engine.events(execution.id)
    assert execution.status == "completed", execution.error
    assert execution.output["waited"] >= 0.065
    (done,) = [e for e in log if e.type == "node_completed"]
    assert [r["op"] for r in done.payload["recorded"]] == ["sleep", "sleep", "now", "uuid1"]
    assert [r["value"] for r in done.payload["recorded"][:2]] == [0.05, 0.02]
    stamp = interception.REAL_DATETIME.strptime(execution.output["stamp"], STAMP)
    assert abs(stamp.timestamp() - time.clock_gettime(time.CLOCK_REALTIME)) < 60
    assert abs(uuid1_seconds(execution.output["uuid1"]) - time.clock_gettime(time.CLOCK_REALTIME)) < 60


def test_a_served_asyncio_sleep_still_yields_to_the_event_loop():
    """A handler polling with asyncio.sleep in virtual time must let other tasks run."""

    async def poller(ctx):
        flag = asyncio.Event()

        async def setter():
            await asyncio.sleep(0)
            flag.set()

        task = asyncio.create_task(setter())
        polls = 0
        while not flag.is_set() and polls < 1000:
            polls += 1
            await asyncio.sleep(60)
        await task
        return {"polls": polls, "t": time.time()}

    out, log, _ = run_probe(7, poller)
    assert 1 <= out["before"]["polls"] < 5
    assert out["before"]["t"] - started_at(log) == pytest.approx(60 * out["before"]["polls"], abs=0.002)


# -- the step's boundary: the engine's tasks, tasks that outlive it ------------------------


class FakeStep:
    """A stand-in for StepContext: a fixed virtual clock that sleeps move."""

    def __init__(self, start: float) -> None:
        self.clock = start
        self.calls: list[tuple[str, Any]] = []

    def now(self) -> datetime.datetime:
        self.calls.append(("now", self.clock))
        return interception.REAL_DATETIME.fromtimestamp(self.clock, datetime.UTC)

    def sleep(self, seconds: float) -> Any:
        self.sleep_blocking(seconds)
        return interception.REAL_ASYNCIO_SLEEP(0)

    def sleep_blocking(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds))
        self.clock += seconds

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=0, version=4)

    def uuid1(self, node: int | None = None, clock_seq: int | None = None) -> uuid.UUID:
        return uuid.UUID(int=1, version=1)

    def random_seed(self) -> int:
        self.calls.append(("random.Random", 1))
        return 1

    def intercepted_random(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return 0


def test_tasks_started_outside_the_step_keep_the_real_asyncio_sleep():
    """The engine's own tasks (runner, heartbeat) run outside any step: a step sleeping
    virtually beside them does not serve, speed up or record their sleeps."""
    step = FakeStep(1_000_000.0)

    async def engine_like() -> float:
        started = time.monotonic()
        for _ in range(5):
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def main() -> tuple[float, float, float]:
        background = asyncio.create_task(engine_like())  # created before the step: no step in its context
        with interception.step_scope(step):
            started = time.monotonic()
            for _ in range(50):
                await asyncio.sleep(3600)
            step_wall = time.monotonic() - started
            inner = time.time()
        return await background, step_wall, inner

    waited, step_wall, inner = asyncio.run(main())
    assert waited >= 0.095  # really waited
    assert step_wall < 1.0
    assert [c for c in step.calls if c[0] == "sleep"] == [("sleep", 3600)] * 50
    assert inner == 1_000_000.0 + 50 * 3600


def test_a_step_scope_is_closed_for_tasks_and_threads_that_outlive_the_handler():
    step = FakeStep(5.0)
    seen: dict[str, float] = {}

    async def main() -> None:
        gate = asyncio.Event()

        async def leftover() -> None:
            seen["inside"] = time.time()
            await gate.wait()
            seen["after"] = time.time()
            started = time.monotonic()
            await asyncio.sleep(0.03)
            seen["slept"] = time.monotonic() - started

        with interception.step_scope(step):
            task = asyncio.create_task(leftover())  # inherits the step
            await asyncio.sleep(0)
        gate.set()
        await task

    asyncio.run(main())
    assert seen["inside"] == 5.0
    assert abs(seen["after"] - time.clock_gettime(time.CLOCK_REALTIME)) < 5
    assert seen["slept"] >= 0.025
    assert interception.current_step() is None


# -- opting out ---------------------------------------------------------------------


def test_handler_registered_without_interception_sees_the_real_world():
    def plain(ctx):
        return {"time": time.time(), "random": random.random(), "uuid": str(uuid.uuid4()),
                "now": datetime.datetime.now(datetime.UTC).isoformat()}  # fmt: skip

    first, log, _ = run_probe(21, plain, intercept=False)
    second, _, _ = run_probe(21, plain, intercept=False)
    real = time.clock_gettime(time.CLOCK_REALTIME)
    # after a 30-day (virtual) delay, the clock it reads is still the real one
    assert abs(first["after"]["time"] - real) < 60
    assert abs(datetime.datetime.fromisoformat(first["after"]["now"]).timestamp() - real) < 60
    assert first["before"]["random"] != second["before"]["random"]
    assert first["before"]["uuid"] != second["before"]["uuid"]
    assert all("recorded" not in e.payload for e in log if e.type == "node_completed")


# -- names bound with `from time import time` after `import cerebelum` ---------------

MODULE_SOURCE = """
from datetime import datetime, UTC
from random import random, randint
from time import sleep, time
from uuid import uuid4


def probe(ctx):
    t0 = time()
    sleep(30 * 86400)
    return {"t0": t0, "t1": time(), "random": random(), "randint": randint(1, 10**9),
            "uuid": str(uuid4()), "now": datetime.now(UTC).timestamp()}
"""


def test_names_bound_by_from_import_after_cerebelum_are_intercepted(tmp_path: Path):
    path = tmp_path / "late_bound_handlers.py"
    path.write_text(MODULE_SOURCE)
    spec = importlib.util.spec_from_file_location("late_bound_handlers_for_interception_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    first, log, _ = run_probe(31, module.probe)
    second, _, _ = run_probe(31, module.probe)
    other, _, _ = run_probe(32, module.probe)
    for key in ("random", "randint", "uuid"):
        assert first["before"][key] == second["before"][key]
        assert first["before"][key] != other["before"][key]
    before = first["before"]
    assert before["t0"] == pytest.approx(started_at(log), abs=0.002)
    assert before["t1"] - before["t0"] == pytest.approx(THIRTY_DAYS, abs=0.002)  # slept 30 days instantly
    assert before["now"] == pytest.approx(before["t1"], abs=0.002)
    assert first["after"]["t0"] - before["t0"] == pytest.approx(2 * THIRTY_DAYS, abs=0.002)


# -- concurrency: steps of different executions at once --------------------------------

ITEMS = [0, 1, 2]
DRAWS = 4


def concurrent_workflow(name: str, handler: str) -> dict[str, Any]:
    """A map over three items, all at once, each drawing values between sleeps."""
    node = {"type": "map", "config": {"items": "input.items", "max_concurrency": 0, "node": fn(handler)}}
    return definition(name, {"draws": node, "last": fn(handler)}, chain("draws", "last"), output="results")


class Rendezvous:
    """Makes every step of both executions wait for the others, so they truly overlap."""

    def __init__(self) -> None:
        self.parties = 0
        self.barrier: threading.Barrier | None = None
        self.arrived = 0
        self.lock = threading.Lock()

    def arm(self, parties: int) -> None:
        self.parties, self.arrived = parties, 0
        self.barrier = threading.Barrier(parties, timeout=20)

    def disarm(self) -> None:
        self.parties, self.barrier = 0, None

    def wait_sync(self) -> None:
        if self.barrier is not None:
            self.barrier.wait()

    async def wait_async(self) -> None:
        if not self.parties:
            return
        with self.lock:
            self.arrived += 1
        deadline = time.monotonic() + 20
        while self.arrived < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError("the other steps never arrived")
            await interception.REAL_ASYNCIO_SLEEP(0.002)  # the test's own wait: not the step's


def concurrent_registry(rendezvous: Rendezvous) -> cerebelum.HandlerRegistry:
    def sync_draws(ctx):
        if ctx.node_id != "last":
            rendezvous.wait_sync()
        values: list[Any] = []
        for _ in range(DRAWS):
            values += [random.random(), str(uuid.uuid4()), random.randint(0, 10**6)]
            time.sleep(0.01)  # real time here: a real pause, during which the others run
        return values

    async def async_draws(ctx):
        if ctx.node_id != "last":
            await rendezvous.wait_async()
        values: list[Any] = []
        for _ in range(DRAWS):
            values += [random.random(), str(uuid.uuid4()), random.randint(0, 10**6)]
            await asyncio.sleep(0.01)
        return values

    registry = cerebelum.HandlerRegistry()
    registry.register("sync_draws", sync_draws)
    registry.register("async_draws", async_draws)
    return registry


@pytest.mark.parametrize("handler", ["sync_draws", "async_draws"])
def test_concurrent_executions_each_get_their_own_values(handler):
    rendezvous = Rendezvous()
    doc = concurrent_workflow(f"concurrent_{handler}", handler)
    payload = {"items": ITEMS}
    with cerebelum.Engine("memory://", handlers=concurrent_registry(rendezvous), workers=4) as engine:
        rendezvous.disarm()
        alone = {seed: engine.run(doc, payload, seed=seed).output for seed in (101, 202)}
        rendezvous.arm(2 * len(ITEMS))
        pending = [engine.execute(doc, payload, seed=seed) for seed in (101, 202)]
        together = {e.seed: engine.wait(e.id, timeout=60) for e in pending}
    for seed in (101, 202):
        assert together[seed].status == "completed", together[seed].error
        assert together[seed].output == alone[seed], seed
    assert alone[101] != alone[202]
    # within one execution, each map item (and the last node) drew its own values
    drawn = [*alone[101]["draws"], alone[101]["last"]]
    assert len({str(v) for v in drawn}) == len(ITEMS) + 1


def clock_registry(rendezvous: Rendezvous) -> cerebelum.HandlerRegistry:
    """Handlers that sleep `input.step` seconds DRAWS times, reading the clock after each."""

    def sync_clock(ctx):
        if ctx.node_id != "last":
            rendezvous.wait_sync()
        seen = []
        for _ in range(DRAWS):
            time.sleep(ctx.input["step"])
            seen.append(time.time())
            interception.REAL_SLEEP(0.005)  # a real pause, during which the other steps run
        return seen

    async def async_clock(ctx):
        if ctx.node_id != "last":
            await rendezvous.wait_async()
        seen = []
        for _ in range(DRAWS):
            await asyncio.sleep(ctx.input["step"])  # served, and yields: the other steps run in between
            seen.append(time.time())
        return seen

    registry = cerebelum.HandlerRegistry()
    registry.register("sync_clock", sync_clock)
    registry.register("async_clock", async_clock)
    return registry


@pytest.mark.parametrize("handler", ["sync_clock", "async_clock"])
def test_concurrent_executions_in_virtual_time_each_keep_their_own_clock(handler):
    """Two executions at once, each map item sleeping between clock reads: every
    step sees its own execution's clock, moved only by its own sleeps."""
    rendezvous = Rendezvous()
    doc = concurrent_workflow(f"clocks_{handler}", handler)
    steps = {101: 7.0, 202: 1000.0}
    with cerebelum.Engine("memory://", handlers=clock_registry(rendezvous), workers=4, virtual_time=True) as engine:
        rendezvous.arm(2 * len(ITEMS))
        started = time.monotonic()
        pending = [engine.execute(doc, {"items": ITEMS, "step": steps[seed]}, seed=seed) for seed in steps]
        done = {e.seed: engine.wait(e.id, timeout=60) for e in pending}
        elapsed = time.monotonic() - started
        logs = {seed: engine.events(done[seed].id) for seed in steps}
    assert elapsed < 30  # 4 * 1000 s of sleeping per item, in no real time
    for seed, step in steps.items():
        assert done[seed].status == "completed", done[seed].error
        start = started_at(logs[seed])
        for item in done[seed].output["draws"]:
            assert [round(t - start, 3) for t in item] == [step * (k + 1) for k in range(DRAWS)], (seed, item)
        # after the join: the latest item's clock, then its own sleeps
        last = [round(t - start, 3) for t in done[seed].output["last"]]
        assert last == [step * (DRAWS + k + 1) for k in range(DRAWS)], seed


def test_tempfile_generators_made_inside_a_step_stay_seeded_by_the_os():
    """tempfile makes its name generators lazily, once per process: whether that
    happens inside a step depends on the process, so it is neither served nor recorded."""
    step = FakeStep(0.0)
    with interception.step_scope(step):
        made_by_tempfile: dict[str, Any] = {"__name__": "tempfile"}
        exec("import random\nrng = random.Random()", made_by_tempfile)
        mine = random.Random()
    assert step.calls == [("random.Random", 1)]  # only the handler's own instance
    assert mine.random() == random.Random(1).random()
    assert made_by_tempfile["rng"].random() != random.Random(1).random()

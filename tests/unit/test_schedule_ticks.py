"""Schedule values and tick arithmetic: validation, every_s and cron ticks, time
zones and daylight saving, catch-up choices (no database, no waiting)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cerebelum.application.schedules import MISFIRE_GRACE_S, _catchup
from cerebelum.domain.errors import ValidationError
from cerebelum.domain.schedules import Schedule, read_schedule, tick_key, tick_text
from cerebelum.infrastructure.calendar import CronCalendar

T0 = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
calendar = CronCalendar()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def schedule(**fields: object) -> Schedule:
    return read_schedule({"name": "s", "workflow": "w", **fields}, T0)


def problems_of(document: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        read_schedule(document, T0)
    return {p.location: p.message for p in caught.value.problems}


def test_a_schedule_has_the_spec_defaults():
    s = schedule(cron="*/5 * * * *")
    assert (s.timezone, s.overlap, s.catchup, s.state, s.input, s.version) == ("UTC", "skip", "latest", "active", {}, None)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"workflow": "w", "every_s": 5}, "name"),
        ({"name": "a b", "workflow": "w", "every_s": 5}, "name"),
        ({"name": "s", "every_s": 5}, "workflow"),
        ({"name": "s", "workflow": "w"}, "cron"),
        ({"name": "s", "workflow": "w", "cron": "* * * * *", "every_s": 5}, "cron"),
        ({"name": "s", "workflow": "w", "every_s": 0}, "every_s"),
        ({"name": "s", "workflow": "w", "every_s": 0.5}, "every_s"),
        ({"name": "s", "workflow": "w", "every_s": 1.5}, "every_s"),
        ({"name": "s", "workflow": "w", "every_s": True}, "every_s"),
        ({"name": "s", "workflow": "w", "every_s": "5"}, "every_s"),
        ({"name": "s", "workflow": "w", "every_s": 5, "overlap": "queue"}, "overlap"),
        ({"name": "s", "workflow": "w", "every_s": 5, "catchup": "some"}, "catchup"),
        ({"name": "s", "workflow": "w", "every_s": 5, "timezone": 3}, "timezone"),
        ({"name": "s", "workflow": "w", "every_s": 5, "version": 0}, "version"),
        ({"name": "s", "workflow": "w", "every_s": 5, "colour": "red"}, "colour"),
    ],
)
def test_each_bad_field_is_named(document, field):
    assert field in problems_of(document)


def test_every_problem_is_reported_at_once():
    assert set(problems_of({"name": "", "every_s": -1, "overlap": "x"})) == {"name", "workflow", "every_s", "overlap"}


@pytest.mark.parametrize("cron", ["* * * *", "61 * * * *", "* * * * * *", "*/0 * * * *", "not cron", "@often"])
def test_the_calendar_names_a_bad_cron_expression(cron):
    assert [field for field, _ in calendar.problems(schedule(cron=cron))] == ["cron"]


def test_the_calendar_names_an_unknown_time_zone_and_accepts_iana_ones():
    assert [f for f, _ in calendar.problems(schedule(cron="0 * * * *", timezone="Mars/Olympus"))] == ["timezone"]
    assert [f for f, _ in calendar.problems(schedule(cron="0 * * * *", timezone="../etc/passwd"))] == ["timezone"]
    assert calendar.problems(schedule(cron="0 * * * *", timezone="Europe/Paris")) == []
    assert calendar.problems(schedule(cron="@hourly")) == []


def test_every_s_ticks_are_aligned_to_the_epoch():
    s = schedule(every_s=15)
    assert calendar.following(s, at("2026-12-04T10:00:07Z"), 3) == [
        at("2026-12-04T10:00:15Z"), at("2026-12-04T10:00:30Z"), at("2026-12-04T10:00:45Z")
    ]  # fmt: skip
    assert calendar.following(s, at("2026-12-04T10:00:15Z"), 1) == [at("2026-12-04T10:00:30Z")]  # strictly after
    due = calendar.due(s, at("2026-12-04T10:00:00Z"), at("2026-12-04T10:01:00Z"), 10)
    assert due == [at("2026-12-04T10:00:15Z"), at("2026-12-04T10:00:30Z"), at("2026-12-04T10:00:45Z"), at("2026-12-04T10:01:00Z")]
    assert calendar.due(s, at("2026-12-04T10:00:00Z"), at("2026-12-04T10:01:00Z"), 2) == due[-2:]  # the latest ones
    assert calendar.due(s, at("2026-12-04T10:01:00Z"), at("2026-12-04T10:01:14Z"), 10) == []


def test_cron_ticks_are_evaluated_in_the_time_zone():
    s = schedule(cron="0 9 * * 1-5", timezone="America/New_York")  # 9:00 on weekdays, New York time
    # Friday 2026-12-04 10:00 UTC is 05:00 in New York: the next fire is 14:00 UTC today, then Monday.
    assert calendar.following(s, T0, 2) == [at("2026-12-04T14:00:00Z"), at("2026-12-07T14:00:00Z")]
    due = calendar.due(s, at("2026-12-01T00:00:00Z"), at("2026-12-04T14:00:00Z"), 10)
    assert due == [at(f"2026-12-0{d}T14:00:00Z") for d in (1, 2, 3, 4)]  # `until` itself is due


def test_daylight_saving_changes_as_croniter_handles_them():
    paris = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    # Spring forward (2026-03-29, 02:00 -> 03:00): 02:30 does not exist; it fires at 03:00 local (01:00 UTC).
    spring = calendar.following(paris, at("2026-03-28T23:00:00Z"), 2)
    assert spring == [at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
    # Fall back (2026-10-25, 03:00 -> 02:00): 02:30 happens twice, and fires at both instants.
    autumn = calendar.following(paris, at("2026-10-24T23:00:00Z"), 3)
    assert autumn == [at("2026-10-25T00:30:00Z"), at("2026-10-25T01:30:00Z"), at("2026-10-26T01:30:00Z")]
    hourly = calendar.following(schedule(cron="0 * * * *", timezone="Europe/Paris"), at("2026-10-24T23:30:00Z"), 4)
    assert [b - a for a, b in itertools.pairwise(hourly)] == [timedelta(hours=1)] * 3  # no hour lost or doubled


def test_ticks_and_keys_are_rfc3339_utc():
    tick = at("2026-12-04T10:00:00Z")
    assert tick_text(tick) == "2026-12-04T10:00:00Z"
    assert tick_key("nightly", tick) == "schedule:nightly:2026-12-04T10:00:00Z"
    assert tick_text(tick + timedelta(milliseconds=250)) == "2026-12-04T10:00:00.250Z"
    assert tick_text(datetime(2026, 12, 4, 11, 0, tzinfo=calendar_zone("Europe/Paris"))) == "2026-12-04T10:00:00Z"


def calendar_zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def ticks(n: int, end: datetime, step: int = 60) -> list[datetime]:
    return [end - timedelta(seconds=step * i) for i in reversed(range(n))]


def test_catchup_latest_starts_only_the_most_recent_missed_tick():
    due = ticks(5, T0)
    assert _catchup("latest", due, T0 + timedelta(seconds=30)) == (due[-1:], due[:-1])
    assert _catchup("latest", [], T0) == ([], [])


def test_catchup_all_starts_each_missed_tick_up_to_100():
    due = ticks(101, T0)
    fire, missed = _catchup("all", due, T0)
    assert fire == due[1:] and missed == due[:1] and len(fire) == 100
    assert _catchup("all", due[-3:], T0) == (due[-3:], [])


def test_catchup_none_starts_only_a_tick_that_is_on_time():
    due = ticks(3, T0)
    assert _catchup("none", due, T0 + timedelta(seconds=MISFIRE_GRACE_S / 2)) == (due[-1:], due[:-1])
    assert _catchup("none", due, T0 + timedelta(seconds=MISFIRE_GRACE_S + 5)) == ([], due)

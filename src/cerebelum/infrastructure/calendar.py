"""The Calendar port: cron expressions through `croniter`, time zones through `zoneinfo`.

`every_s` ticks are aligned to the Unix epoch (every 3600 s fires at the top
of each UTC hour), so every process computes the same ticks whatever its
start time. Cron expressions are evaluated in the schedule's time zone, with
daylight-saving transitions as croniter handles them: a time skipped by the
spring change fires at the first valid time after it, a time repeated by the
autumn change fires at both instants.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from cerebelum.domain.schedules import Schedule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_TINY = timedelta(microseconds=1)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}' (an IANA name such as 'UTC' or 'Europe/Paris')") from None


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a standard 5-field cron expression (or a macro), or None."""
    fields = expression.split()
    if len(fields) != 5 and not (len(fields) == 1 and fields[0].lower() in _MACROS):
        return f"'{expression}' is not a 5-field cron expression (minute hour day-of-month month day-of-week)"
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError) as exc:
        return f"'{expression}' is not a valid cron expression: {exc}"
    return None


class CronCalendar:
    def problems(self, schedule: Schedule) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if schedule.cron is not None and (problem := cron_problem(schedule.cron)) is not None:
            found.append(("cron", problem))
        try:
            _zone(schedule.timezone)
        except ValueError as exc:
            found.append(("timezone", str(exc)))
        return found

    def following(self, schedule: Schedule, after: datetime, count: int) -> list[datetime]:
        if schedule.every_s is not None:
            first = (after - _EPOCH) // timedelta(seconds=schedule.every_s) + 1
            return [_EPOCH + timedelta(seconds=schedule.every_s * (first + i)) for i in range(count)]
        assert schedule.cron is not None
        ticks = croniter(schedule.cron, after.astimezone(_zone(schedule.timezone)))
        return [ticks.get_next(datetime).astimezone(UTC) for _ in range(count)]

    def due(self, schedule: Schedule, after: datetime, until: datetime, limit: int) -> list[datetime]:
        if until <= after or limit <= 0:
            return []
        if schedule.every_s is not None:
            step = timedelta(seconds=schedule.every_s)
            last = (until - _EPOCH) // step
            first = max((after - _EPOCH) // step + 1, last - limit + 1)
            return [_EPOCH + step * n for n in range(first, last + 1)]
        assert schedule.cron is not None
        ticks = croniter(schedule.cron, (until + _TINY).astimezone(_zone(schedule.timezone)))  # `until` itself counts
        found: list[datetime] = []
        while len(found) < limit:
            tick = ticks.get_prev(datetime).astimezone(UTC)
            if tick <= after:
                break
            found.append(tick)
        return found[::-1]

"""Cron expressions: five fields in UTC, parsed and stepped through without a library. Pure.

``minute hour day-of-month month day-of-week``, as crontab(5) writes them: ``*``, a value, a range
``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (from a to the field's end), and lists of those
separated by commas. Months and days of the week may be named (``jan``..``dec``, ``sun``..``sat``,
any case); day of week 7 is Sunday, like 0. The macros ``@yearly`` (``@annually``), ``@monthly``,
``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` stand for their usual expressions.

Day of month and day of week combine as cron has always combined them: when both are restricted
(neither starts with ``*``), a day matches if *either* matches (``0 0 1 * mon``: the first of the
month and every Monday); otherwise both must (the one starting with ``*`` matches every day, so
``*/2`` in one of them makes it an *and*). An expression that can never match (``0 0 30 2 *``) is
refused when parsed, so stepping through one always finds its next minute.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final

from shared.errors import HiveError

MAX_EXPRESSION_CHARS: Final = 200

FIELD_NAMES: Final = ("minute", "hour", "day of month", "month", "day of week")
_BOUNDS: Final = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTH_NAMES: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
_DAY_NAMES: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_NAMES: Final = (None, None, None, _MONTH_NAMES, _DAY_NAMES)
MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_LONGEST_MONTH: Final = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}
SEARCH_DAYS: Final = 366 * 41
"""How far a search looks. A valid expression matches within 40 years: the rarest match, a 29th of
February on one day of the week, recurs within 28 years but for the 2100 that is no leap year."""


class CronError(HiveError, ValueError):
    """An expression that is not a valid five-field cron expression; the message says where."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the values each field allows."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday."""
    either_day: bool
    """Day of month and day of week both restricted: a day matches if either does."""

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.weekday() + 1) % 7 in self.weekdays
        return (by_date or by_weekday) if self.either_day else (by_date and by_weekday)

    def matches(self, ts: float) -> bool:
        """Whether the minute holding `ts` (Unix seconds) is one of the expression's."""
        moment = datetime.fromtimestamp(ts, UTC)
        return moment.minute in self.minutes and moment.hour in self.hours and self.day_matches(moment.date())

    def next_after(self, ts: float) -> int:
        """The first minute of the expression strictly after `ts`, in Unix seconds."""
        start = datetime.fromtimestamp((int(ts // 60) + 1) * 60, UTC)
        day, hour, minute = start.date(), start.hour, start.minute
        for _ in range(SEARCH_DAYS):
            if self.day_matches(day):
                found = self._first_in_day(hour, minute)
                if found is not None:
                    return _epoch(day, *found)
            if day == date.max:
                break
            day += timedelta(days=1)
            hour, minute = 0, 0
        raise CronError(f"{self.expression!r} matches no minute within {SEARCH_DAYS // 366} years")

    def latest_at_or_before(self, ts: float) -> int | None:
        """The last minute of the expression at or before `ts`, in Unix seconds (None before year 1)."""
        end = datetime.fromtimestamp(int(ts // 60) * 60, UTC)
        day, hour, minute = end.date(), end.hour, end.minute
        for _ in range(SEARCH_DAYS):
            if self.day_matches(day):
                found = self._last_in_day(hour, minute)
                if found is not None:
                    return _epoch(day, *found)
            if day == date.min:
                return None
            day -= timedelta(days=1)
            hour, minute = 23, 59
        return None

    def _first_in_day(self, hour: int, minute: int) -> tuple[int, int] | None:
        """The first (hour, minute) of the expression at or after (hour, minute) in one day."""
        for candidate in self.hours[bisect.bisect_left(self.hours, hour) :]:
            if candidate == hour:
                index = bisect.bisect_left(self.minutes, minute)
                if index < len(self.minutes):
                    return candidate, self.minutes[index]
                continue
            return candidate, self.minutes[0]
        return None

    def _last_in_day(self, hour: int, minute: int) -> tuple[int, int] | None:
        """The last (hour, minute) of the expression at or before (hour, minute) in one day."""
        for candidate in reversed(self.hours[: bisect.bisect_right(self.hours, hour)]):
            if candidate == hour:
                index = bisect.bisect_right(self.minutes, minute)
                if index > 0:
                    return candidate, self.minutes[index - 1]
                continue
            return candidate, self.minutes[-1]
        return None


def _epoch(day: date, hour: int, minute: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp())


@lru_cache(maxsize=1024)
def parse_cron(expression: str) -> Cron:
    """Parse a cron expression, or raise CronError naming the field and what is wrong with it."""
    if not isinstance(expression, str):
        raise CronError("a cron expression is text")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CronError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.strip()
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise CronError(f"unknown macro {text!r}: use one of {', '.join(MACROS)}")
        text = macro
    fields = text.split()
    if len(fields) != len(FIELD_NAMES):
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
            + (f" in {text!r}" if fields else "")
        )
    values = [_parse_field(index, field) for index, field in enumerate(fields)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    either_day = not fields[2].startswith("*") and not fields[4].startswith("*")
    cron = Cron(
        expression=expression,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        either_day=either_day,
    )
    if not either_day and not any(day <= _LONGEST_MONTH[month] for month in cron.months for day in cron.days):
        raise CronError(
            f"day of month {fields[2]!r} never falls in month {fields[3]!r}: the expression never matches"
        )
    return cron


def _parse_field(index: int, text: str) -> set[int]:
    name = FIELD_NAMES[index]
    low, high = _BOUNDS[index]
    found: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{name}: empty item in {text!r}")
        found.update(_parse_item(index, item))
    if not found:  # not reachable: every item adds a value or raises
        raise CronError(f"{name}: {text!r} allows no value in {low}-{high}")
    return found


def _parse_item(index: int, item: str) -> range:
    name = FIELD_NAMES[index]
    low, high = _BOUNDS[index]
    top = 6 if index == 4 else high  # day of week: 7 is Sunday, but ranges and * end at Saturday
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        step = _number(index, step_text, what="step", names=False)
        if step < 1:
            raise CronError(f"{name}: step {step_text!r} must be at least 1")
    if base == "*":
        first, last = low, top
    elif "-" in base:
        start_text, _dash, end_text = base.partition("-")
        first = _number(index, start_text, what="range start")
        last = _number(index, end_text, what="range end")
        if first > last:
            raise CronError(f"{name}: range {base!r} runs backwards (write {last}-{first}, or a list)")
    else:
        first = _number(index, base, what="value")
        last = top if slash else first
        if slash and first > top:
            last = first
    for value in (first, last):
        if not low <= value <= high:
            raise CronError(f"{name}: {value} is out of range {low}-{high}")
    return range(first, last + 1, step)


def _number(index: int, text: str, *, what: str, names: bool = True) -> int:
    name = FIELD_NAMES[index]
    lookup = _NAMES[index] if names else None
    if lookup is not None and text.lower() in lookup:
        return lookup[text.lower()]
    if not text.isascii() or not text.isdigit():
        allowed = " or a name (jan-dec)" if index == 3 else " or a name (sun-sat)" if index == 4 else ""
        raise CronError(f"{name}: {what} {text!r} is not a number{allowed if names else ''}")
    return int(text)

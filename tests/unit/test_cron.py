"""The cron parser and its stepping: every form of a field, clear refusals, and next/previous
minutes checked against a brute-force walk written apart from the parser."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.cron import CronError, parse_cron


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "minutes", "hours"),
    [
        ("* * * * *", set(range(60)), set(range(24))),
        ("5 * * * *", {5}, set(range(24))),
        ("0,15,30,45 * * * *", {0, 15, 30, 45}, set(range(24))),
        ("*/20 9-17 * * *", {0, 20, 40}, set(range(9, 18))),
        ("10-30/10 */6 * * *", {10, 20, 30}, {0, 6, 12, 18}),
        ("50/5 22/1 * * *", {50, 55}, {22, 23}),
        ("1,5-7,*/30 0 * * *", {0, 1, 5, 6, 7, 30}, {0}),
    ],
)
def test_minutes_and_hours_take_values_ranges_steps_and_lists(
    expression: str, minutes: set[int], hours: set[int]
) -> None:
    cron = parse_cron(expression)
    assert set(cron.minutes) == minutes and set(cron.hours) == hours


def test_months_and_days_of_the_week_may_be_named_and_seven_is_sunday() -> None:
    cron = parse_cron("0 0 * JAN-mar,Dec sun,Wed-FRI")
    assert cron.months == {1, 2, 3, 12}
    assert cron.weekdays == {0, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == {5, 6, 0}


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_macros_are_their_expressions(macro: str, same_as: str) -> None:
    ours, theirs = parse_cron(macro), parse_cron(same_as)
    assert (ours.minutes, ours.hours, ours.days, ours.months, ours.weekdays) == (
        theirs.minutes,
        theirs.hours,
        theirs.days,
        theirs.months,
        theirs.weekdays,
    )


def test_day_of_month_and_day_of_week_match_either_when_both_are_restricted() -> None:
    either = parse_cron("0 0 1 * mon")  # the 1st of each month, and every Monday
    firsts_and_mondays = [iso(either.next_after(at("2025-07-27T12:00")))]
    while len(firsts_and_mondays) < 4:
        firsts_and_mondays.append(iso(either.next_after(at(firsts_and_mondays[-1]))))
    assert firsts_and_mondays == [
        "2025-07-28 00:00",
        "2025-08-01 00:00",
        "2025-08-04 00:00",
        "2025-08-11 00:00",
    ]
    both = parse_cron("0 0 */2 * mon")  # a star first: odd days that are Mondays
    assert iso(both.next_after(at("2025-07-27T12:00"))) == "2025-08-11 00:00"


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day of week: 8 is out of range 0-7"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("*/0 * * * *", "step '0' must be at least 1"),
        ("*/x * * * *", "step 'x' is not a number"),
        ("a * * * *", "minute: value 'a' is not a number"),
        ("* * * foo *", "month: value 'foo' is not a number or a name (jan-dec)"),
        ("* * * * funday", "day of week: value 'funday' is not a number or a name (sun-sat)"),
        ("1,,2 * * * *", "minute: empty item"),
        ("-5 * * * *", "range start '' is not a number"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("@often", "unknown macro '@often'"),
        ("٣ * * * *", "is not a number"),
        ("x" * 201, "longer than 200 characters"),
    ],
)
def test_a_bad_expression_is_refused_saying_which_field_and_why(expression: str, says: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expression)
    assert says in str(info.value)


def test_a_leap_day_is_a_valid_day_and_found_years_ahead() -> None:
    cron = parse_cron("0 12 29 2 *")
    assert iso(cron.next_after(at("2025-03-01T00:00"))) == "2028-02-29 12:00"
    assert iso(cron.latest_at_or_before(at("2028-02-28T23:59")) or 0) == "2024-02-29 12:00"
    sunday_leap_day = parse_cron("0 0 29 2 */7")  # a star first: the 29th AND a Sunday
    assert iso(sunday_leap_day.next_after(at("2025-01-01T00:00"))) == "2032-02-29 00:00"


def test_next_is_strictly_after_and_latest_is_at_or_before() -> None:
    cron = parse_cron("30 * * * *")
    assert iso(cron.next_after(at("2025-07-28T10:30"))) == "2025-07-28 11:30"
    assert iso(cron.next_after(at("2025-07-28T10:29:59.999"))) == "2025-07-28 10:30"
    assert iso(cron.latest_at_or_before(at("2025-07-28T10:30")) or 0) == "2025-07-28 10:30"
    assert iso(cron.latest_at_or_before(at("2025-07-28T10:29:59")) or 0) == "2025-07-28 09:30"


# --- stepping, against a brute-force walk -------------------------------------------------------------


class Field:
    """A field drawn at random: its text and the values it must mean."""

    def __init__(self, text: str, values: set[int]) -> None:
        self.text = text
        self.values = values


def field(low: int, high: int) -> st.SearchStrategy[Field]:
    star = st.just(Field("*", set(range(low, high + 1))))
    value = st.integers(low, high).map(lambda v: Field(str(v), {v}))
    span = st.tuples(st.integers(low, high), st.integers(low, high)).map(sorted)
    ranged = span.map(lambda r: Field(f"{r[0]}-{r[1]}", set(range(r[0], r[1] + 1))))
    stepped = st.tuples(st.integers(1, high - low + 1), st.booleans(), span).map(
        lambda t: (
            Field(f"*/{t[0]}", set(range(low, high + 1, t[0])))
            if t[1]
            else Field(f"{t[2][0]}-{t[2][1]}/{t[0]}", set(range(t[2][0], t[2][1] + 1, t[0])))
        )
    )
    single = st.one_of(star, value, ranged, stepped)
    listed = st.lists(st.one_of(value, ranged, stepped), min_size=2, max_size=4).map(
        lambda items: Field(",".join(i.text for i in items), set().union(*(i.values for i in items)))
    )
    return st.one_of(single, listed)


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, list[Field]]:
    fields = [
        draw(field(0, 59)),
        draw(field(0, 23)),
        draw(field(1, 31)),
        draw(field(1, 12)),
        draw(field(0, 6)),
    ]
    return " ".join(f.text for f in fields), fields


def brute_day_matches(fields: list[Field], day: date) -> bool:
    if day.month not in fields[3].values:
        return False
    by_date = day.day in fields[2].values
    by_weekday = day.isoweekday() % 7 in fields[4].values
    if fields[2].text.startswith("*") or fields[4].text.startswith("*"):
        return by_date and by_weekday
    return by_date or by_weekday


def brute_next(fields: list[Field], ts: float) -> int | None:
    """The first matching minute strictly after `ts`: day by day, then minute by minute."""
    moment = datetime.fromtimestamp((int(ts // 60) + 1) * 60, UTC)
    day, minute_of_day = moment.date(), moment.hour * 60 + moment.minute
    for _ in range(366 * 41):
        if brute_day_matches(fields, day):
            for minute in range(minute_of_day, 1440):
                if minute // 60 in fields[1].values and minute % 60 in fields[0].values:
                    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + minute * 60
        day, minute_of_day = day + timedelta(days=1), 0
    return None


def never_matches(fields: list[Field]) -> bool:
    longest = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
    either = not fields[2].text.startswith("*") and not fields[4].text.startswith("*")
    return not either and not any(d <= longest[m] for m in fields[3].values for d in fields[2].values)


times = st.floats(min_value=at("1990-01-01T00:00"), max_value=at("2090-01-01T00:00"))


@settings(max_examples=300, deadline=None)
@given(drawn=expressions(), now=times)
def test_the_next_minute_is_after_now_matches_and_none_is_skipped(
    drawn: tuple[str, list[Field]], now: float
) -> None:
    expression, fields = drawn
    if never_matches(fields):
        with pytest.raises(CronError, match="never matches"):
            parse_cron(expression)
        return
    cron = parse_cron(expression)
    assert set(cron.minutes) == fields[0].values and set(cron.hours) == fields[1].values
    following = cron.next_after(now)
    assert following > now
    assert cron.matches(following)
    assert following == brute_next(fields, now)  # the first match: nothing between now and it


@settings(max_examples=300, deadline=None)
@given(drawn=expressions(), now=times)
def test_the_latest_minute_is_at_or_before_now_and_nothing_matches_between(
    drawn: tuple[str, list[Field]], now: float
) -> None:
    expression, fields = drawn
    if never_matches(fields):
        return
    cron = parse_cron(expression)
    latest = cron.latest_at_or_before(now)
    assert latest is not None and latest <= now
    assert cron.matches(latest)
    assert cron.next_after(latest) > now  # no match in (latest, now]
    assert cron.latest_at_or_before(cron.next_after(now)) == cron.next_after(now)


@settings(max_examples=100, deadline=None)
@given(drawn=expressions(), now=times)
def test_stepping_from_slot_to_slot_visits_every_match_in_order(
    drawn: tuple[str, list[Field]], now: float
) -> None:
    expression, fields = drawn
    if never_matches(fields):
        return
    cron = parse_cron(expression)
    slot, brute = now, now
    for _ in range(5):
        slot = cron.next_after(slot)
        found = brute_next(fields, brute)
        assert found is not None
        brute = found
        assert slot == brute

"""Budget and usage periods as a team sees them in its time zone: a day, week or month starts at
local midnight, DST makes days of 23 or 25 hours (23.5 or 24.5 on Lord Howe Island), and every
instant belongs to exactly one period of each kind, whatever the zone did to its clocks."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.money.quotas import Calendar, Period

# The same 300 examples on every run: 130 years of every zone's history hold one-off quirks
# (two found so far, pinned below as examples), and CI must not be where the next one is met
# first. When changing the Calendar, explore with derandomize=False and pin what it finds.
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)
HOUR = 3600
DAY = 24 * HOUR
KINDS = ("d", "w", "m")
DST_ZONES = {
    "Europe/Berlin": {23 * HOUR, DAY, 25 * HOUR},
    "America/New_York": {23 * HOUR, DAY, 25 * HOUR},
    "Australia/Lord_Howe": {23 * HOUR + 1800, DAY, DAY + 1800},  # a 30-minute shift
}
instants = st.floats(min_value=0, max_value=4_102_444_800)  # 1970 to 2100
any_zone = st.timezones()
dst_zones = st.sampled_from(sorted(DST_ZONES)).map(ZoneInfo)
GOOSE_BAY = ZoneInfo("America/Goose_Bay")
# At 1987-10-25 00:01 local, Goose Bay set its clocks back an hour, to 1987-10-24 23:01: the
# local date went back across midnight.
GOOSE_BAY_CLOCKS_BACK = 562_129_260.0


def of_kind(periods: list[Period], kind: str) -> list[Period]:
    return [p for p in periods if p.kind == kind]


def first_date(period: Period) -> date:
    """The local date a period starts on, read from its id."""
    if period.kind == "w":
        year, week = period.id.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    if period.kind == "m":
        return date.fromisoformat(period.id + "-01")
    return date.fromisoformat(period.id)


def local_date(zone: ZoneInfo, at: float) -> date:
    return datetime.fromtimestamp(at, zone).date()


def offset(zone: ZoneInfo, at: float) -> float:
    shift = datetime.fromtimestamp(at, zone).utcoffset()
    assert shift is not None
    return shift.total_seconds()


@PROPERTY_SETTINGS
@given(any_zone, instants)
@example(GOOSE_BAY, GOOSE_BAY_CLOCKS_BACK + 1800)
@example(ZoneInfo("UTC"), 2051222399.9999995)  # half a microsecond before midnight: found in CI
def test_every_instant_is_in_exactly_one_period_of_each_kind(zone: ZoneInfo, at: float) -> None:
    """The one of its local date; or, where the clock was set back past midnight, the next one,
    which had begun already (a period once started does not end before its end)."""
    cal = Calendar(zone)
    periods = cal.periods(at)
    for kind in KINDS:
        candidates = of_kind(periods, kind)
        containing = [p for p in candidates if p.start <= at < p.end]
        assert len(containing) == 1, (kind, candidates)
        assert containing[0] in candidates[1:]
        assert cal.current(kind, at) == containing[0]


@PROPERTY_SETTINGS
@given(any_zone, instants)
def test_periods_follow_each_other_without_gaps_or_overlaps(zone: ZoneInfo, at: float) -> None:
    periods = Calendar(zone).periods(at)
    for kind in KINDS:
        for earlier, later in itertools.pairwise(of_kind(periods, kind)):
            assert earlier.start <= earlier.end == later.start <= later.end
            assert earlier.id < later.id  # ids sort as time goes


@PROPERTY_SETTINGS
@given(any_zone, instants)
@example(ZoneInfo("Pacific/Apia"), datetime(2011, 12, 29, 12, tzinfo=UTC).timestamp())
def test_a_period_starts_at_the_first_instant_of_its_local_date(zone: ZoneInfo, at: float) -> None:
    """Local midnight, or the end of a DST gap that swallowed it, or (for a day the zone
    skipped, as Samoa skipped 2011-12-30) the start of the next day, at the same instant."""
    for period in Calendar(zone).periods(at):
        starts_on = first_date(period)
        assert local_date(zone, period.start - 1) < starts_on <= local_date(zone, period.start)
        if period.start == period.end:
            assert period.kind == "d" and local_date(zone, period.start) > starts_on


@PROPERTY_SETTINGS
@given(any_zone, instants)
def test_a_period_has_the_same_id_and_bounds_from_any_instant_in_it(
    zone: ZoneInfo, at: float
) -> None:
    cal = Calendar(zone)
    for kind in KINDS:
        period = cal.current(kind, at)
        assert cal.current(kind, period.start) == period
        assert cal.current(kind, period.end - 0.001) == period


@PROPERTY_SETTINGS
@given(dst_zones, instants)
# Lord Howe moved from +10 to +10:30 at midnight on 1981-03-01: that midnight never happened on
# its clocks, February ended at the jump, and 1 March had 23.5 hours (found by this test)
@example(ZoneInfo("Australia/Lord_Howe"), 350_000_000.0)
@example(ZoneInfo("Australia/Lord_Howe"), 352_230_000.0)
def test_dst_makes_days_and_weeks_longer_or_shorter_by_the_zones_shift(
    zone: ZoneInfo, at: float
) -> None:
    """A period is its days less the shift of the clock within it; a boundary that fell in a
    jump is where the clock jumped, so the offset in force just before it is the one to count."""
    for period in Calendar(zone).periods(at):
        if period.kind == "m":
            first = first_date(period)
            days = calendar.monthrange(first.year, first.month)[1]
        else:
            days = 7 if period.kind == "w" else 1
        shift = offset(zone, period.end - 1) - offset(zone, period.start - 1)
        assert period.end - period.start == days * DAY - shift
        if period.kind == "d":
            assert period.end - period.start in DST_ZONES[str(zone)]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", "2024-03-31", 23),
        ("Europe/Berlin", "2024-06-01", 24),
        ("Europe/Berlin", "2024-10-27", 25),
        ("America/New_York", "2024-03-10", 23),
        ("America/New_York", "2024-11-03", 25),
        ("Australia/Lord_Howe", "2024-04-07", 24.5),
        ("Australia/Lord_Howe", "2024-10-06", 23.5),
        ("UTC", "2024-03-31", 24),
    ],
)
def test_a_day_lasts_as_many_hours_as_the_zones_clock_says(
    zone: str, day: str, hours: float
) -> None:
    cal = Calendar(ZoneInfo(zone))
    noon = datetime.fromisoformat(f"{day}T12:00").replace(tzinfo=ZoneInfo(zone)).timestamp()
    period = cal.current("d", noon)
    assert period.id == day
    assert period.end - period.start == hours * HOUR


@pytest.mark.parametrize(
    ("month", "days"),
    [
        ("2024-02", 29),  # leap year
        ("2023-02", 28),
        ("2000-02", 29),  # divisible by 400
        ("2100-02", 28),  # divisible by 100, not 400
        ("2024-04", 30),
        ("2024-12", 31),
    ],
)
def test_a_month_has_its_calendar_days(month: str, days: int) -> None:
    zone = ZoneInfo("Asia/Tokyo")  # no DST: every day 24 hours
    cal = Calendar(zone)
    mid = datetime.fromisoformat(f"{month}-15T12:00").replace(tzinfo=zone).timestamp()
    period = cal.current("m", mid)
    assert period.id == month
    assert period.end - period.start == days * DAY


def test_a_month_that_changes_dst_is_an_hour_shorter_or_longer() -> None:
    cal = Calendar(ZoneInfo("Europe/Berlin"))
    march = cal.current("m", datetime(2024, 3, 15, tzinfo=UTC).timestamp())
    october = cal.current("m", datetime(2024, 10, 15, tzinfo=UTC).timestamp())
    assert march.end - march.start == 31 * DAY - HOUR
    assert october.end - october.start == 31 * DAY + HOUR


@pytest.mark.parametrize(
    ("day", "week"),
    [("2024-12-30", "2025-W01"), ("2021-01-03", "2020-W53"), ("2024-06-05", "2024-W23")],
)
def test_a_week_is_named_by_its_iso_year_and_number(day: str, week: str) -> None:
    cal = Calendar(ZoneInfo("UTC"))
    at = datetime.fromisoformat(f"{day}T12:00+00:00").timestamp()
    period = cal.current("w", at)
    assert period.id == week
    assert datetime.fromtimestamp(period.start, UTC).date().weekday() == 0  # a Monday


def test_when_the_clock_goes_back_past_midnight_the_new_day_has_begun_already() -> None:
    """Goose Bay's clock read 1987-10-24 23:30 half an hour after 1987-10-25 began: that half
    hour counts in the 25th, so no instant belongs to two days."""
    at = GOOSE_BAY_CLOCKS_BACK + 1800
    assert local_date(GOOSE_BAY, at) == date(1987, 10, 24)
    day = Calendar(GOOSE_BAY).current("d", at)
    assert day.id == "1987-10-25"
    assert day.start == GOOSE_BAY_CLOCKS_BACK - 60  # the first local 00:00 of the 25th
    assert day.end - day.start == 25 * HOUR  # 23:01 to 00:01 came twice

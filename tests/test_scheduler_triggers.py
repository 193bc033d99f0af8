"""Triggers: cron parsing and validation, the DST rule in real time zones, intervals, one-off dates."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from lssm_jobs.scheduler import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    InvalidScheduleError,
    JobScheduler,
    ManualClock,
    parse_interval,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc


def fires(trigger: CronTrigger | IntervalTrigger, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks after ``start``, as datetimes in the trigger's zone."""
    out = []
    at = start.timestamp()
    for _ in range(count):
        tick = trigger.next_fire(at)
        assert tick is not None
        out.append(datetime.fromtimestamp(tick, trigger.tz))
        at = tick
    return out


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- cron syntax ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "5 fields"),
        ("* * * * * * *", "5 fields"),
        ("", "5 fields"),
        ("@reboot", "unknown cron alias"),
        ("@fortnightly", "unknown cron alias"),
        ("0 0 31 4 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("*/0 * * * *", ""),
        ("0 25 * * *", "out of range"),
        ("0 0 * * mon-funday", ""),
    ],
)
def test_invalid_cron_is_rejected_with_the_expression_named(expression: str, reason: str) -> None:
    with pytest.raises(InvalidScheduleError, match=reason or None) as caught:
        CronTrigger(expression)
    assert isinstance(caught.value, ValueError)
    assert repr(expression) in str(caught.value)
    assert caught.value.expression == expression


def test_schedule_rejects_invalid_cron_at_definition_time() -> None:
    scheduler = JobScheduler()
    with pytest.raises(InvalidScheduleError, match=r"'0 0 31 4 \*'.*never fires"):
        scheduler.schedule("never", "0 0 31 4 *", print)
    with pytest.raises(ValueError, match="'61 \\* \\* \\* \\*'"):
        scheduler.schedule("bad", "61 * * * *", print)
    with pytest.raises(InvalidScheduleError, match="unknown time zone"):
        scheduler.schedule("tz", "0 3 * * *", print, tz="Europe/Atlantis")
    with pytest.raises(InvalidScheduleError, match="not a cron expression, interval or datetime"):
        scheduler.schedule("what", "sometimes", print)
    assert scheduler.list() == []


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", utc(2026, 5, 5, 11)),
        ("@daily", utc(2026, 5, 6)),
        ("@midnight", utc(2026, 5, 6)),
        ("@weekly", utc(2026, 5, 10)),  # Sunday
        ("@monthly", utc(2026, 6, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@DAILY", utc(2026, 5, 6)),
    ],
)
def test_cron_aliases(alias: str, expected: datetime) -> None:
    assert fires(CronTrigger(alias), utc(2026, 5, 5, 10, 30), 1) == [expected]


def test_six_fields_put_seconds_last() -> None:
    every_15s = CronTrigger("* * * * * */15")
    assert fires(every_15s, utc(2026, 5, 5, 10, 0, 50), 3) == [
        utc(2026, 5, 5, 10, 1, 0),
        utc(2026, 5, 5, 10, 1, 15),
        utc(2026, 5, 5, 10, 1, 30),
    ]
    half_past = CronTrigger("0 * * * * 30")
    assert fires(half_past, utc(2026, 5, 5, 10, 0, 40), 1) == [utc(2026, 5, 5, 11, 0, 30)]


def test_day_of_month_or_day_of_week_like_classic_cron() -> None:
    # the 13th, or any Friday
    ticks = fires(CronTrigger("0 0 13 * 5"), utc(2026, 2, 1), 4)
    assert ticks == [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20), utc(2026, 2, 27)]


def test_hashed_fields_spread_by_schedule_name() -> None:
    scheduler = JobScheduler()
    minutes = set()
    for index in range(12):
        info = scheduler.schedule(f"report-{index}", "H 3 * * *", print)
        assert info.next_run is not None
        minutes.add(info.next_run.minute)
    assert len(minutes) > 3, "H should spread schedules over the hour"
    with pytest.raises(InvalidScheduleError):
        CronTrigger("H * * * *")  # needs a hash id; the scheduler passes the name


# -- cron and daylight saving time ----------------------------------------------------------------------


def test_berlin_spring_forward_runs_the_missing_time_once_after_the_jump() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that night.
    daily = CronTrigger("30 2 * * *", tz="Europe/Berlin")
    assert fires(daily, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4) == [
        datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN),
        datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN),  # shifted forward by the gap, not skipped
        datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN),
        datetime(2026, 3, 31, 2, 30, tzinfo=BERLIN),
    ]
    half_hours = CronTrigger("*/30 2 * * *", tz="Europe/Berlin")
    ticks = fires(half_hours, datetime(2026, 3, 29, 0, tzinfo=BERLIN), 3)
    assert [tick.strftime("%d %H:%M %Z") for tick in ticks] == [
        "29 03:00 CEST",
        "29 03:30 CEST",
        "30 02:00 CEST",
    ]


def test_berlin_fall_back_runs_the_repeated_time_once() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:00-02:59 happens twice.
    daily = CronTrigger("30 2 * * *", tz=BERLIN)
    ticks = fires(daily, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3)
    assert [tick.astimezone(UTC) for tick in ticks] == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first pass
        utc(2026, 10, 26, 1, 30),  # next day, 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]
    every_20 = CronTrigger("*/20 2 * * *", tz=BERLIN)
    ticks = fires(every_20, datetime(2026, 10, 25, 0, tzinfo=BERLIN), 4)
    assert [tick.strftime("%d %H:%M %Z") for tick in ticks] == [
        "25 02:00 CEST",
        "25 02:20 CEST",
        "25 02:40 CEST",
        "26 02:00 CET",
    ]


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
@pytest.mark.parametrize(("expression", "spacing"), [("0 * * * *", 3600), ("*/15 * * * *", 900)])
def test_every_hour_schedules_keep_real_time_through_both_changes(
    zone: ZoneInfo, expression: str, spacing: int
) -> None:
    trigger = CronTrigger(expression, tz=zone)
    for day in (
        datetime(2026, 3, 7, tzinfo=zone),
        datetime(2026, 3, 28, tzinfo=zone),
        datetime(2026, 10, 24, tzinfo=zone),
        datetime(2026, 10, 31, tzinfo=zone),
    ):
        ticks = [tick.timestamp() for tick in fires(trigger, day, 48 * 3600 // spacing)]
        gaps = {later - earlier for earlier, later in itertools.pairwise(ticks)}
        assert gaps == {spacing}, f"{expression} in {zone} around {day:%Y-%m-%d}: spacing {sorted(gaps)}"


def test_new_york_changes() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST (01:00-01:59 twice).
    spring = CronTrigger("30 2 * * *", tz="America/New_York")
    ticks = fires(spring, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2)
    assert [tick.strftime("%d %H:%M %Z") for tick in ticks] == ["08 03:30 EDT", "09 02:30 EDT"]
    fall = CronTrigger("30 1 * * *", tz="America/New_York")
    ticks = fires(fall, datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 2)
    assert [tick.astimezone(UTC) for tick in ticks] == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def _brute_force(trigger: CronTrigger, start: datetime, end: datetime) -> list[float]:
    """Every tick between two wall-clock times by the documented rule, one match at a time."""
    instants: set[float] = set()
    walk = croniter(trigger._text, start - timedelta(seconds=1))
    while (wall := walk.get_next(datetime)) < end:
        instants.update(trigger._instants(wall))
    return sorted(instants)


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Tokyo"]
)
def test_next_and_latest_agree_with_brute_force_around_transitions(zone: str) -> None:
    # Lord Howe moves by 30 minutes; Apia skipped all of 2011-12-30.
    rng = random.Random(zone)
    tz = ZoneInfo(zone)
    expressions = ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15 1-3 * * *", "0 0 * * *", "*/30 0-4 * * *"]
    days = [
        datetime(2026, 3, 29),
        datetime(2026, 10, 25),
        datetime(2026, 3, 8),
        datetime(2026, 11, 1),
        datetime(2026, 4, 5),
        datetime(2026, 10, 4),
        datetime(2011, 12, 30),
    ]
    for expression in expressions:
        trigger = CronTrigger(expression, tz=tz)
        for day in days:
            ticks = _brute_force(trigger, day - timedelta(days=1), day + timedelta(days=2))
            if len(ticks) < 2:
                continue
            for _ in range(40):
                after = rng.choice(ticks[:-1]) if rng.random() < 0.5 else rng.uniform(ticks[0], ticks[-1])
                assert trigger.next_fire(after) == min(tick for tick in ticks if tick > after)
                until = rng.uniform(after, ticks[-1])
                expected = max((tick for tick in ticks if after < tick <= until), default=None)
                assert trigger.latest_fire(after, until) == expected


def test_latest_fire_jumps_over_long_outages_quickly() -> None:
    every_second = CronTrigger("* * * * * *", tz=BERLIN)
    start = datetime(2026, 3, 1, tzinfo=BERLIN).timestamp()
    until = start + 40 * 86400 + 0.5  # across the spring change
    assert every_second.latest_fire(start, until) == until - 0.5


# -- intervals and dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("every 30s", 30),
        ("every 5 minutes", 300),
        ("every 1h30m", 5400),
        ("every hour", 3600),
        ("Every 2 Days, 3 hours", 2 * 86400 + 3 * 3600),
        ("every 1.5s", 1.5),
        ("every 250ms", 0.25),
        ("every 1 week and 1 day", 8 * 86400),
    ],
)
def test_interval_strings(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["every", "every 0s", "30s", "every 5 parsecs", "every s5", "every -5m"])
def test_bad_interval_strings(text: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse_interval(text)


@pytest.mark.parametrize("every", [timedelta(0), -5, 0, float("nan"), True, [1]])
def test_bad_intervals(every: object) -> None:
    with pytest.raises(InvalidScheduleError):
        IntervalTrigger(every)  # type: ignore[arg-type]


def test_intervals_are_aligned_to_the_epoch_or_to_start() -> None:
    aligned = IntervalTrigger("every 30s")
    assert fires(aligned, utc(2026, 5, 5, 10, 0, 10), 2) == [
        utc(2026, 5, 5, 10, 0, 30),
        utc(2026, 5, 5, 10, 1),
    ]
    assert aligned.next_fire(utc(2026, 5, 5, 10, 0, 30).timestamp()) == utc(2026, 5, 5, 10, 1).timestamp()
    phased = IntervalTrigger(timedelta(minutes=10), start=utc(2026, 5, 5, 10, 3))
    assert fires(phased, utc(2026, 5, 5, 9), 2) == [utc(2026, 5, 5, 10, 3), utc(2026, 5, 5, 10, 13)]
    assert phased.latest_fire(0, utc(2026, 5, 5, 10, 2).timestamp()) is None
    assert phased.latest_fire(0, utc(2026, 5, 5, 11, 0).timestamp()) == utc(2026, 5, 5, 10, 53).timestamp()
    fractional = IntervalTrigger(0.1)
    tick = 1_800_000_000.0
    for _ in range(50):  # no float drift: each tick is computed from whole microseconds
        following = fractional.next_fire(tick)
        assert following is not None and round(following - tick, 6) == 0.1
        tick = following


def test_a_day_interval_is_24_hours_even_across_dst() -> None:
    daily = IntervalTrigger("every 1 day", start=datetime(2026, 3, 28, 12, tzinfo=BERLIN), tz=BERLIN)
    ticks = fires(daily, datetime(2026, 3, 28, tzinfo=BERLIN), 2)
    assert [tick.strftime("%d %H:%M %Z") for tick in ticks] == ["28 12:00 CET", "29 13:00 CEST"]


def test_date_trigger_fires_once() -> None:
    at = datetime(2026, 7, 1, 9, 30)  # naive: wall-clock time in the trigger's zone
    trigger = DateTrigger(at, tz="Europe/Berlin")
    assert trigger.next_fire(0) == datetime(2026, 7, 1, 9, 30, tzinfo=BERLIN).timestamp()
    assert trigger.next_fire(trigger.at) is None
    assert trigger.latest_fire(0, trigger.at) == trigger.at
    with pytest.raises(InvalidScheduleError):
        DateTrigger("tomorrow")  # type: ignore[arg-type]


def test_schedule_picks_the_trigger_kind_from_the_expression() -> None:
    clock = ManualClock(utc(2026, 5, 5, 10, 0, 10))
    scheduler = JobScheduler(clock=clock, tz="Europe/Berlin")
    assert scheduler.schedule("c", "0 13 * * *", print).kind == "cron"
    assert scheduler.schedule("i1", "every 30s", print).kind == "interval"
    assert scheduler.schedule("i2", timedelta(minutes=5), print).kind == "interval"
    assert scheduler.schedule("i3", 45, print).kind == "interval"
    assert scheduler.schedule("d", datetime(2026, 5, 6, 8), print).kind == "date"
    assert (
        scheduler.schedule(
            "x",
            "every 10 minutes",
            print,
            trigger="interval",
            trigger_options={"start": utc(2026, 5, 5, 10, 1)},
        ).kind
        == "interval"
    )
    assert scheduler.next_run("c") == datetime(2026, 5, 5, 13, tzinfo=BERLIN)  # the scheduler's default zone
    assert scheduler.next_run("i1") == utc(2026, 5, 5, 10, 0, 30)
    assert scheduler.next_run("d") == datetime(2026, 5, 6, 8, tzinfo=BERLIN)
    assert scheduler.next_run("x") == utc(2026, 5, 5, 10, 1)
    trigger = CronTrigger("0 6 * * *", tz=NEW_YORK)
    assert scheduler.schedule("own", trigger, print).trigger == "cron '0 6 * * *' (America/New_York)"

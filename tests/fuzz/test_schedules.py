"""Random cron expressions, interval strings and time zones are accepted or refused cleanly: a refusal is
one InvalidScheduleError (a ValueError naming the expression), an accepted schedule yields ticks in order
and never raises."""

from __future__ import annotations

import zoneinfo
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from lssm_jobs.queue import MemoryJobQueue
from lssm_jobs.scheduler import JobScheduler
from lssm_jobs.scheduler.triggers import CRON_ALIASES, CronTrigger, InvalidScheduleError

_TOKENS = st.sampled_from(
    [
        "*", "?", "L", "W", "#", "/", "-", ",", "H", "LW", "0", "1", "2", "5", "7", "12", "15", "23", "24",
        "29", "30", "31", "32", "59", "60", "61", "99", "-1", "0x1", "jan", "JAN", "dec", "foo", "sun", "SAT",
        "mon-fri", "*/5", "*/0", "1-5/2", "5-1", "5L", "3#2", "9#9", "H(0-29)", "H/15", "\t", "\x00", "٣",
    ]
)
_FIELDS = st.lists(_TOKENS, min_size=1, max_size=4).map("".join)
CRONS = (
    st.lists(_FIELDS, min_size=0, max_size=7).map(" ".join)
    | st.sampled_from([*CRON_ALIASES, "@reboot", "@every 5m", "@", "@DAILY", " @hourly "])
    | st.text(max_size=30)
)
INTERVALS = st.builds(
    lambda amount, unit, rest: f"every {amount}{unit}{rest}",
    st.sampled_from(["", "0", "1", "1.5", "-1", "10", "1e9", "99999999999"]),
    st.sampled_from(["s", " minutes", "h", "d", "w", "ms", "fortnight", ""]),
    st.sampled_from(["", " and 5s", ", 2 hours", "30m", " x"]),
) | st.text(max_size=20).map(lambda text: "every " + text)
ZONES = (
    st.none()
    | st.sampled_from(sorted(zoneinfo.available_timezones()))
    | st.sampled_from(["UTC", "utc", "Z", "+01:00", "GMT+5", "../../etc/passwd", "Europe/", " Europe/Berlin", ""])
    | st.text(max_size=20)
)
AFTER = st.floats(min_value=0, max_value=4_102_444_800)  # 1970 to 2100


def _check_ticks(trigger: Any, after: float) -> None:
    tick = trigger.next_fire(after)
    assert tick is None or tick > after
    if tick is not None:
        following = trigger.next_fire(tick)
        assert following is None or following > tick
    until = after + 40 * 86_400
    latest = trigger.latest_fire(after, until)
    assert latest is None or after < latest <= until


@given(expression=CRONS, tz=ZONES, after=AFTER)
def test_cron_expressions_and_time_zones_are_accepted_or_refused_cleanly(
    expression: str, tz: str | None, after: float
) -> None:
    try:
        trigger = CronTrigger(expression, tz=tz)
    except InvalidScheduleError as error:
        assert isinstance(error, ValueError) and str(error)
        return
    _check_ticks(trigger, after)


@given(when=CRONS | INTERVALS, tz=ZONES)
def test_the_scheduler_accepts_or_refuses_any_schedule_cleanly(when: str, tz: str | None) -> None:
    scheduler = JobScheduler(MemoryJobQueue(sinks=[]))
    try:
        info = scheduler.schedule("fuzzed", when, lambda: None, tz=tz)
    except InvalidScheduleError as error:
        assert str(error)
        return
    assert info.name == "fuzzed" and info.trigger
    next_run = scheduler.next_run("fuzzed")
    assert next_run is None or next_run.tzinfo is not None
    assert [schedule.name for schedule in scheduler.list()] == ["fuzzed"]

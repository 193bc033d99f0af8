"""Triggers decide when a schedule fires: cron expressions (with time zones), fixed intervals, one-off dates.

Every trigger is a pure function of time: ``next_fire(after)`` gives the same tick on every machine, which
is what lets several scheduler instances agree on a tick and claim it exactly once.

Cron and daylight saving time
-----------------------------
Cron expressions match *wall-clock* times in the trigger's time zone. Where a time zone changes its UTC
offset, a matching wall-clock time may not exist (clocks jump forward) or may exist twice (clocks fall back).
:class:`CronTrigger` resolves those times by one rule, chosen so that a schedule for a time of day runs once
that day and a schedule for "every hour / every N minutes" keeps running on real time:

* A schedule whose hour field matches **every** hour (``*``, ``*/1``, ``0-23``) follows real time: a time
  that does not exist is not a tick, and a repeated time is a tick on both passes. ``"0 * * * *"`` fires
  every real hour through both changes, ``"*/15 * * * *"`` every real 15 minutes.
* Any other schedule (a time of day such as ``"30 2 * * *"``):

  - a time that does not exist fires as if the clocks had not changed yet, i.e. shifted forward by the
    gap: 02:30 on the spring-forward night in Europe/Berlin fires at 03:30 CEST. It is never skipped.
  - a time that exists twice fires once, on its first occurrence (the earlier UTC instant, before the
    clocks go back). It is never repeated.

Ticks are instants: two wall-clock matches that land on the same instant are one tick.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from lssm_jobs.errors import LssmJobsError

UTC = timezone.utc

#: Cron aliases accepted besides 5- and 6-field expressions.
CRON_ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROS = 1_000_000
# Offsets are sampled this far either side of an instant to bound where wall-clock times can map (no time
# zone changes its offset twice within 30 hours).
_OFFSET_SAMPLES = (-108_000.0, -54_000.0, 0.0, 54_000.0, 108_000.0)


class InvalidScheduleError(LssmJobsError, ValueError):
    """A schedule's expression (cron, interval, date) or time zone is invalid; the message names it.

    ``expression`` is what was given, ``reason`` what is wrong with it.
    """

    def __init__(self, expression: object, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"invalid schedule {expression!r}: {reason}")


def resolve_timezone(tz: str | tzinfo | None, default: tzinfo = UTC) -> tzinfo:
    """A ``tzinfo`` from an IANA name (``"Europe/Berlin"``), a ``tzinfo``, or None (``default``).

    :raises InvalidScheduleError: the name is not a known time zone.
    """
    if tz is None:
        return default
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise InvalidScheduleError(tz, "a time zone is an IANA name such as 'Europe/Berlin' or a tzinfo")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidScheduleError(tz, f"unknown time zone ({error})") from None


def _naive(timestamp: float) -> datetime:
    """``timestamp`` as a naive datetime in plain arithmetic (the wall clock of a zone with offset 0)."""
    return _EPOCH_NAIVE + timedelta(microseconds=round(timestamp * _MICROS))


def _timestamp(value: datetime, tz: tzinfo) -> float:
    """Epoch seconds of ``value``; a naive datetime is read as wall-clock time in ``tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.timestamp()


class Trigger(ABC):
    """When a schedule fires. Subclass it (and register a :class:`~lssm_jobs.registrations.TriggerSpec`) to
    add a kind of trigger.

    Triggers must be deterministic: every scheduler instance, in every process, must compute the same tick
    instants, since ticks are claimed by their instant.
    """

    #: The kind's registered name (``"cron"``, ``"interval"``, ``"date"``).
    kind: ClassVar[str] = ""

    #: The time zone next runs are shown in.
    tz: tzinfo = UTC

    @abstractmethod
    def next_fire(self, after: float) -> float | None:
        """The first tick strictly after ``after`` (epoch seconds), or None when no tick is left."""

    def latest_fire(self, after: float, until: float) -> float | None:
        """The last tick ``t`` with ``after < t <= until``, or None.

        The default walks :meth:`next_fire`; override it when a trigger can find the answer directly (the
        scheduler asks after downtime, when many ticks may lie in between).
        """
        latest = None
        tick = self.next_fire(after)
        while tick is not None and tick <= until:
            latest = tick
            tick = self.next_fire(tick)
        return latest

    @abstractmethod
    def describe(self) -> str:
        """A one-line description for listings, e.g. ``cron '0 3 * * *' (Europe/Berlin)``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class CronTrigger(Trigger):
    """Fires on a cron expression, in a time zone (UTC by default).

    Five fields (minute hour day-of-month month day-of-week), or six with seconds as the **sixth** field
    (``"* * * * * */10"`` is every 10 seconds, ``"0 * * * * 30"`` half a minute past each hour), or an alias
    (``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``). Fields
    support lists, ranges, steps, month and weekday names, ``L`` and ``#`` as croniter does; when both
    day-of-month and day-of-week are restricted, a day matching either fires (classic cron). ``H`` (hashed)
    values are spread by ``hash_id`` (the scheduler passes the schedule's name).

    :raises InvalidScheduleError: the expression is malformed, has another number of fields, or never fires.
    """

    kind = "cron"

    def __init__(
        self, expression: str, *, tz: str | tzinfo | None = None, hash_id: str | None = None
    ) -> None:
        if not isinstance(expression, str):
            raise InvalidScheduleError(expression, "a cron expression must be a string")
        self.expression = expression
        self.tz = resolve_timezone(tz)
        text = " ".join(expression.split())
        if text.startswith("@"):
            alias = CRON_ALIASES.get(text.lower())
            if alias is None:
                known = ", ".join(CRON_ALIASES)
                raise InvalidScheduleError(expression, f"unknown cron alias; known aliases: {known}")
            text = alias
        fields = text.split(" ") if text else []
        if len(fields) not in (5, 6):
            raise InvalidScheduleError(
                expression,
                f"a cron expression has 5 fields (minute hour day month weekday) or 6 with seconds last, "
                f"got {len(fields)}",
            )
        self._text = text
        self._hash_id = hash_id.encode() if hash_id else None
        try:
            probe = croniter(text, _naive(0), hash_id=self._hash_id)
        except CroniterError as error:
            raise InvalidScheduleError(expression, str(error)) from None
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidScheduleError(expression, f"{type(error).__name__}: {error}") from None
        hours: list[Any] = list(probe.expanded[1])
        self._every_hour = hours == ["*"] or sorted(hours) == list(range(24))
        self._fixed = isinstance(self.tz, timezone)
        try:
            croniter(text, _naive(1_700_000_000), hash_id=self._hash_id).get_next(datetime)
        except CroniterBadDateError:
            raise InvalidScheduleError(expression, "no date matches it, so it never fires") from None

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.tz})"

    # -- wall clock <-> instants ----------------------------------------------------------------------------

    def _offset(self, timestamp: float) -> float:
        offset = datetime.fromtimestamp(timestamp, self.tz).utcoffset()
        return offset.total_seconds() if offset is not None else 0.0

    def _offset_bounds(self, timestamp: float) -> tuple[float, float]:
        """The smallest and largest UTC offset a wall-clock time mapping near ``timestamp`` can use.

        A change of offset by ``d`` only reorders wall-clock times within ``d`` of it, so after finding the
        size of nearby changes (within 30 hours) only offsets within that distance count; away from a
        change both bounds are the current offset and the search walks no extra matches.
        """
        if self._fixed:
            offset = self._offset(timestamp)
            return offset, offset
        offsets = [self._offset(timestamp + delta) for delta in _OFFSET_SAMPLES]
        spread = max(offsets) - min(offsets)
        if spread == 0:
            return offsets[0], offsets[0]
        near = [self._offset(timestamp + delta) for delta in (-spread, 0.0, spread)]
        return min(near), max(near)

    def _instants(self, wall: datetime) -> tuple[float, ...]:
        """The ticks a matching wall-clock time stands for, by the rule in the module docstring."""
        if self._fixed:
            return (wall.replace(tzinfo=self.tz).timestamp(),)
        first = wall.replace(tzinfo=self.tz, fold=0)
        second = wall.replace(tzinfo=self.tz, fold=1)
        offset_first, offset_second = first.utcoffset(), second.utcoffset()
        if offset_first == offset_second:
            return (first.timestamp(),)
        assert offset_first is not None and offset_second is not None
        if offset_first > offset_second:  # exists twice: fold 0 is the first pass, before the clocks go back
            return (first.timestamp(), second.timestamp()) if self._every_hour else (first.timestamp(),)
        # Does not exist (clocks jumped forward). fold 0 reads it with the offset from before the jump, which
        # is the time shifted forward by the gap.
        return () if self._every_hour else (first.timestamp(),)

    def _walk(self, start: datetime, *, backwards: bool) -> croniter:
        return croniter(self._text, start, hash_id=self._hash_id, is_prev=backwards)

    # -- the trigger ----------------------------------------------------------------------------------------

    def next_fire(self, after: float) -> float | None:
        # Wall-clock times before after + (smallest nearby offset) cannot map past `after`, so walk matches
        # forward from there; stop once no later match can map below the best tick found.
        low, _ = self._offset_bounds(after)
        walk = self._walk(_naive(after + low), backwards=False)
        best: float | None = None
        stop: datetime | None = None
        while True:
            try:
                wall = walk.get_next(datetime)
            except CroniterBadDateError:
                return best
            if stop is not None and wall > stop:
                return best
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
                    stop = _naive(best + self._offset_bounds(best)[1])

    def latest_fire(self, after: float, until: float) -> float | None:
        if until <= after:
            return None
        _, high = self._offset_bounds(until)
        floor = _naive(after + self._offset_bounds(after)[0])
        walk = self._walk(_naive(until + high) + timedelta(seconds=1), backwards=True)
        best: float | None = None
        stop: datetime | None = None
        while True:
            try:
                wall = walk.get_prev(datetime)
            except CroniterBadDateError:
                return best
            if wall <= floor or (stop is not None and wall < stop):
                return best
            for instant in self._instants(wall):
                if after < instant <= until and (best is None or instant > best):
                    best = instant
                    stop = _naive(best + self._offset_bounds(best)[0])


_UNIT_NAMES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 604800.0),
)
_INTERVAL_UNITS: dict[str, float] = {name: seconds for names, seconds in _UNIT_NAMES for name in names}
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)?\s*([a-z]+)")
_INTERVAL_SEPARATORS = re.compile(r"(?:\s*,\s*|\s+and\s+|\s+)")


def parse_interval(text: str) -> float:
    """Seconds in an interval string: ``"every 30s"``, ``"every 5 minutes"``, ``"every 1h30m"``,
    ``"every hour"``, ``"every 2 days, 3 hours"``. Units: ms, s/sec/second(s), m/min/minute(s),
    h/hr/hour(s), d/day(s), w/week(s).

    :raises InvalidScheduleError: not of that form, or not positive.
    """
    body = " ".join(text.lower().split())
    if not body.startswith("every "):
        raise InvalidScheduleError(text, "an interval string starts with 'every', e.g. 'every 30s'")
    body = body[len("every ") :].strip()
    total = 0.0
    position = 0
    matched = False
    while position < len(body):
        separator = _INTERVAL_SEPARATORS.match(body, position)
        if separator is not None and separator.end() > position:
            position = separator.end()
            continue
        part = _INTERVAL_PART.match(body, position)
        if part is None or part.group(2) not in _INTERVAL_UNITS:
            raise InvalidScheduleError(
                text,
                f"cannot read {body[position:]!r}; write e.g. 'every 30s', 'every 5 minutes', 'every 1h30m'",
            )
        amount = float(part.group(1)) if part.group(1) else 1.0
        total += amount * _INTERVAL_UNITS[part.group(2)]
        matched = True
        position = part.end()
    if not matched or total <= 0:
        raise InvalidScheduleError(text, "an interval must be longer than zero")
    return total


def interval_seconds(every: timedelta | float | str) -> float:
    """Seconds of ``every`` given as a ``timedelta``, a number of seconds, or an ``"every ..."`` string.

    :raises InvalidScheduleError: not one of those, or not positive.
    """
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, str):
        return parse_interval(every)
    elif isinstance(every, (int, float)) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise InvalidScheduleError(every, "an interval is a timedelta, seconds, or a string like 'every 30s'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidScheduleError(every, "an interval must be longer than zero")
    return seconds


class IntervalTrigger(Trigger):
    """Fires every ``every`` (a ``timedelta``, seconds, or ``"every 30s"``), at ``start + k * every``.

    ``start`` defaults to the Unix epoch, so ticks fall on round multiples (every 30 s at :00 and :30 of each
    minute; every 5 minutes at :00, :05, ...) and every instance and every restart computes the same ticks.
    With ``start`` (an aware datetime, a naive one read in ``tz``, or epoch seconds) the first tick is at
    ``start`` and none comes before it. Intervals are exact elapsed time: "every 1 day" is 24 hours even
    across a DST change; use cron for a time of day.

    :raises InvalidScheduleError: ``every`` is not a positive interval.
    """

    kind = "interval"

    def __init__(
        self,
        every: timedelta | float | str,
        *,
        start: datetime | float | None = None,
        tz: str | tzinfo | None = None,
    ) -> None:
        self.every = every
        self.tz = resolve_timezone(tz)
        self.seconds = interval_seconds(every)
        self._period = max(1, round(self.seconds * _MICROS))
        if start is None:
            self._anchor: int | None = None
        elif isinstance(start, datetime):
            self._anchor = round(_timestamp(start, self.tz) * _MICROS)
        else:
            self._anchor = round(float(start) * _MICROS)

    def describe(self) -> str:
        text = f"every {timedelta(microseconds=self._period)}"
        if self._anchor is not None:
            text += f" from {datetime.fromtimestamp(self._anchor / _MICROS, self.tz).isoformat()}"
        return f"interval {text}"

    def _tick(self, index: int) -> float:
        return ((self._anchor or 0) + index * self._period) / _MICROS

    def next_fire(self, after: float) -> float | None:
        anchor = self._anchor or 0
        index = (round(after * _MICROS) - anchor) // self._period + 1
        if self._anchor is not None:
            index = max(index, 0)
        return self._tick(index)

    def latest_fire(self, after: float, until: float) -> float | None:
        anchor = self._anchor or 0
        index = (round(until * _MICROS) - anchor) // self._period
        if self._anchor is not None and index < 0:
            return None
        tick = self._tick(index)
        return tick if tick > after else None


class DateTrigger(Trigger):
    """Fires once, at ``at`` (an aware datetime, or a naive one read as wall-clock time in ``tz``).

    A one-off schedule whose time has already passed when it is first registered never fires.
    """

    kind = "date"

    def __init__(self, at: datetime | float, *, tz: str | tzinfo | None = None) -> None:
        self.tz = resolve_timezone(tz)
        if isinstance(at, datetime):
            self.at = _timestamp(at, self.tz)
        elif isinstance(at, (int, float)) and not isinstance(at, bool):
            self.at = float(at)
        else:
            raise InvalidScheduleError(at, "a one-off schedule needs a datetime")

    def describe(self) -> str:
        return f"once at {datetime.fromtimestamp(self.at, self.tz).isoformat()}"

    def next_fire(self, after: float) -> float | None:
        return self.at if self.at > after else None

    def latest_fire(self, after: float, until: float) -> float | None:
        return self.at if after < self.at <= until else None


# -- factories and expression sniffing for the built-in TriggerSpecs ------------------------------------------


def looks_like_cron(expression: Any) -> bool:
    """Whether ``expression`` is meant as cron: a string that is an ``@alias`` or has 5 or more fields."""
    if not isinstance(expression, str):
        return False
    text = expression.strip()
    return text.startswith("@") or len(text.split()) >= 5


def looks_like_interval(expression: Any) -> bool:
    """Whether ``expression`` is meant as an interval: a timedelta, a number, or an ``"every ..."`` string."""
    if isinstance(expression, timedelta):
        return True
    if isinstance(expression, (int, float)) and not isinstance(expression, bool):
        return True
    return isinstance(expression, str) and expression.strip().lower().startswith("every ")


def looks_like_date(expression: Any) -> bool:
    """Whether ``expression`` is a one-off time: a datetime."""
    return isinstance(expression, datetime)


def cron_trigger_factory(
    expression: Any, *, tz: str | tzinfo | None = None, name: str | None = None, **options: Any
) -> CronTrigger:
    """TriggerSpec factory: ``name`` (the schedule's) spreads ``H`` fields unless ``hash_id`` is given."""
    hash_id = options.pop("hash_id", name)
    if options:
        raise TypeError(f"unknown cron trigger options: {sorted(options)}")
    return CronTrigger(expression, tz=tz, hash_id=hash_id)


def interval_trigger_factory(
    expression: Any, *, tz: str | tzinfo | None = None, name: str | None = None, **options: Any
) -> IntervalTrigger:
    start = options.pop("start", None)
    if options:
        raise TypeError(f"unknown interval trigger options: {sorted(options)}")
    return IntervalTrigger(expression, start=start, tz=tz)


def date_trigger_factory(
    expression: Any, *, tz: str | tzinfo | None = None, name: str | None = None, **options: Any
) -> DateTrigger:
    if options:
        raise TypeError(f"unknown date trigger options: {sorted(options)}")
    return DateTrigger(expression, tz=tz)

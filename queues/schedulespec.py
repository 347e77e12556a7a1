"""Schedules as plain code: a PUT body parsed into a ScheduleSpec (errors collected with
JSON Pointer paths, like queues.jobspec), and the ticks of a schedule. Cron expressions
are cronsim's (5 fields, or 6 with seconds first), evaluated in the schedule's IANA time
zone, so DST is cronsim's business, not ours: on a spring-forward day a 02:30 job runs
at 03:00, on a fall-back day once, at the first 02:30. Interval ticks are
``anchor + k * every_ms`` (k >= 0), the anchor being ``start_at`` or, without one, the
second the schedule was created. Every tick lies in [start_at, end_at]."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.utils.dateparse import parse_datetime

from kernel import limits
from kernel.problems import FieldError, InvalidInput, pointer_segment

from .jobspec import SCHEDULE_KEY_PREFIX, JobSpec, Problems, parse_job_spec
from .models import CatchUp

TEMPLATE_FIELDS = frozenset(
    {"data", "priority", "max_attempts", "backoff", "timeout", "tags", "subject"}
)
SCHEDULE_FIELDS = frozenset(
    {"cron", "every_ms", "timezone", "start_at", "end_at", "catch_up", "max_catch_up"}
)
MIN_EVERY_MS = 1000  # the scheduler process wakes at least once a second
MAX_EVERY_MS = limits.MAX_DELAY_MS  # a year
MAX_CRON_LENGTH = 200  # Schedule.cron's column
MAX_TIME_ZONE_LENGTH = 64  # Schedule.time_zone's column
DEFAULT_MAX_CATCH_UP = 10
MAX_CATCH_UP = 1000
# Counting the ticks a catch-up skips stops here (the audit event says "at least").
MAX_COUNTED = 10_000
_STEP = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    template: JobSpec  # data, priority, max_attempts, backoff, timeout_ms, tags, subject
    cron: str = ""
    every_ms: int | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    catch_up: str = CatchUp.LATEST
    max_catch_up: int = DEFAULT_MAX_CATCH_UP


class Timed(Protocol):
    """What tick computation reads of a schedule (a Schedule row has all of it)."""

    cron: str
    every_ms: int | None
    time_zone: str
    start_at: datetime | None
    end_at: datetime | None
    created_at: datetime


def _zone(raw: object, problems: Problems) -> str:
    if raw is None:
        return "UTC"
    message = "must be an IANA time zone name, e.g. Europe/Berlin"
    if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_TIME_ZONE_LENGTH:
        problems.invalid.append(FieldError("/timezone", message))
        return "UTC"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        problems.invalid.append(FieldError("/timezone", message))
        return "UTC"
    return raw


def _cron(raw: object, problems: Problems) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_CRON_LENGTH:
        problems.invalid.append(
            FieldError("/cron", f"must be a cron expression of at most {MAX_CRON_LENGTH} chars")
        )
        return ""
    try:
        CronSim(raw, datetime.now(UTC))
    except CronSimError as error:
        problems.invalid.append(
            FieldError("/cron", f"is not a valid cron expression (5 or 6 fields): {error}")
        )
        return ""
    return raw


def _every(raw: object, problems: Problems) -> int | None:
    if type(raw) is not int or not MIN_EVERY_MS <= raw <= MAX_EVERY_MS:
        problems.invalid.append(
            FieldError("/every_ms", f"must be an integer between {MIN_EVERY_MS} and {MAX_EVERY_MS}")
        )
        return None
    return raw


def _moment(raw: dict[str, Any], name: str, problems: Problems) -> datetime | None:
    value = raw.get(name)
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        problems.invalid.append(
            FieldError(f"/{name}", "must be an ISO 8601 date-time with a UTC offset or Z")
        )
        return None
    return parsed.astimezone(UTC)


def _catch_up(raw: dict[str, Any], problems: Problems) -> tuple[str, int]:
    mode = raw.get("catch_up", CatchUp.LATEST)
    if mode not in CatchUp.values:
        problems.invalid.append(FieldError("/catch_up", "must be 'none', 'latest' or 'all'"))
        mode = CatchUp.LATEST
    most = raw.get("max_catch_up", DEFAULT_MAX_CATCH_UP)
    if type(most) is not int or not 1 <= most <= MAX_CATCH_UP:
        problems.invalid.append(
            FieldError("/max_catch_up", f"must be an integer between 1 and {MAX_CATCH_UP}")
        )
        most = DEFAULT_MAX_CATCH_UP
    return str(mode), most


def parse_schedule_spec(raw: object) -> ScheduleSpec:
    """A ScheduleSpec from a PUT body, or InvalidInput (400) naming every bad field;
    the template is checked by the push's own rules (queues.jobspec)."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            "The request has invalid fields.", errors=[FieldError("/", "must be a JSON object")]
        )
    problems = Problems()
    for name in sorted(set(raw) - TEMPLATE_FIELDS - SCHEDULE_FIELDS):
        problems.invalid.append(FieldError(f"/{pointer_segment(name)}", "is not a known field"))
    cron, every_ms = "", None
    if ("cron" in raw) == ("every_ms" in raw):
        problems.invalid.append(FieldError("/cron", "give exactly one of cron and every_ms"))
    elif "cron" in raw:
        cron = _cron(raw["cron"], problems)
    else:
        every_ms = _every(raw["every_ms"], problems)
    zone = _zone(raw.get("timezone"), problems)
    start_at = _moment(raw, "start_at", problems)
    end_at = _moment(raw, "end_at", problems)
    if start_at is not None and end_at is not None and end_at <= start_at:
        problems.invalid.append(FieldError("/end_at", "must be after start_at"))
    catch_up, max_catch_up = _catch_up(raw, problems)
    template = parse_job_spec(
        {name: value for name, value in raw.items() if name in TEMPLATE_FIELDS},
        path="",
        problems=problems,
        max_bytes=settings.MAX_JOB_BYTES,
    )
    problems.raise_any()
    assert template is not None  # no problems, so parsed
    return ScheduleSpec(
        template=template,
        cron=cron,
        every_ms=every_ms,
        timezone=zone,
        start_at=start_at,
        end_at=end_at,
        catch_up=catch_up,
        max_catch_up=max_catch_up,
    )


# -- ticks -----------------------------------------------------------------------------


def _anchor(schedule: Timed) -> datetime:
    if schedule.start_at is not None:
        return schedule.start_at
    return schedule.created_at.replace(microsecond=0)


def _interval_ticks(schedule: Timed, after: datetime, until: datetime) -> range:
    """The k of the interval ticks in (after, until]: tick = anchor + k * every."""
    assert schedule.every_ms is not None
    every = timedelta(milliseconds=schedule.every_ms)
    anchor = _anchor(schedule)
    first = 0 if after < anchor else (after - anchor) // every + 1
    last = -1 if until < anchor else (until - anchor) // every
    return range(first, last + 1)


def _bounds(schedule: Timed, after: datetime, until: datetime) -> tuple[datetime, datetime]:
    """(after, until] narrowed to [start_at, end_at]."""
    if schedule.start_at is not None:
        after = max(after, schedule.start_at - _STEP)
    if schedule.end_at is not None:
        until = min(until, schedule.end_at)
    return after, until


def next_tick(schedule: Timed, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (UTC), or None when end_at is past."""
    low, _ = _bounds(schedule, after, after)
    if schedule.every_ms is not None:
        anchor = _anchor(schedule)
        every = timedelta(milliseconds=schedule.every_ms)
        tick = anchor + every * (0 if low < anchor else (low - anchor) // every + 1)
    else:
        zone = ZoneInfo(schedule.time_zone)
        try:
            tick = next(CronSim(schedule.cron, low.astimezone(zone))).astimezone(UTC)
        except StopIteration:
            return None
    if schedule.end_at is not None and tick > schedule.end_at:
        return None
    return tick


def ticks_between(
    schedule: Timed, after: datetime, until: datetime, *, last: int | None = None
) -> tuple[list[datetime], int]:
    """The ticks in (after, until] (UTC, oldest first), only the ``last`` most recent if
    given, and how many there are in all (counting stops at MAX_COUNTED)."""
    low, high = _bounds(schedule, after, until)
    if high <= low:
        return [], 0
    if schedule.every_ms is not None:
        ks = _interval_ticks(schedule, low, high)
        every = timedelta(milliseconds=schedule.every_ms)
        kept = ks if last is None else ks[max(0, len(ks) - last) :]
        return [_anchor(schedule) + every * k for k in kept], len(ks)
    zone = ZoneInfo(schedule.time_zone)
    recent: deque[datetime] = deque(maxlen=last)
    count = 0
    for tick in CronSim(schedule.cron, low.astimezone(zone)):
        if tick > high or count >= MAX_COUNTED:
            break
        recent.append(tick.astimezone(UTC))
        count += 1
    if count >= MAX_COUNTED and last is not None:
        # Too many to walk: the most recent ones, walking back from ``high``.
        back = CronSim(schedule.cron, (high + _STEP).astimezone(zone), reverse=True)
        recent = deque(reversed([next(back).astimezone(UTC) for _ in range(last)]))
    return list(recent), count


def tick_key(name: str, tick: datetime) -> str:
    """A tick's job key: the schedule's name and the tick in UTC, e.g.
    ``schedule:nightly:2026-03-29T01:00:00Z``."""
    return f"{SCHEDULE_KEY_PREFIX}{name}:{tick.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"

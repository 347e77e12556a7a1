"""Rate limits shared by every app server: the generic cell rate algorithm (GCRA), its
state a row per key in ``security_ratecounter``, each decision one atomic statement on
the database's clock (an upsert that only moves the row when the request fits).

A limit of ``limit`` per ``period`` admits a burst of ``limit`` and then one request
every ``period / limit`` seconds; a refusal says how long until the next one fits."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

_RATE = re.compile(r"(?P<limit>[1-9][0-9]{0,8})/(?P<count>[1-9][0-9]{0,5})?(?P<unit>s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    limit: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``100/60s``, ``5000/h``, ``20/1m``."""
        match = _RATE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a rate like 100/60s, 5000/1h or 20/m")
        count = int(match["count"] or 1)
        return cls(int(match["limit"]), float(count * _UNITS[match["unit"]]))

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_s:g}s"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # until one more request fits (0 when allowed)


_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_MAX = {"postgresql": "GREATEST", "sqlite": "MAX"}

# The row moves only if the request fits: tat' = max(tat, now) + cost * interval, and
# it fits while tat' - now <= period. No row back means refused.
_TAKE = """
INSERT INTO security_ratecounter (key, tat) VALUES (%(key)s, {now} + %(increment)s)
ON CONFLICT (key) DO UPDATE
    SET tat = {max}(security_ratecounter.tat, {now}) + %(increment)s
    WHERE {max}(security_ratecounter.tat, {now}) + %(increment)s - {now} <= %(period)s
RETURNING tat, {now}
"""
_PEEK = "SELECT tat, {now} FROM security_ratecounter WHERE key = %(key)s"


def _sql(template: str) -> str:
    vendor = connection.vendor
    return template.format(now=_NOW[vendor], max=_MAX[vendor])


def _decision(rate: Rate, tat: float | None, now: float, allowed: bool) -> Decision:
    interval = rate.period_s / rate.limit
    backlog = max(0.0, (tat or now) - now)  # seconds of "debt" in the bucket
    remaining = max(0, math.floor((rate.period_s - backlog) / interval + 1e-9))
    retry = 0.0 if allowed else max(0.0, backlog + interval - rate.period_s)
    return Decision(allowed, rate.limit, remaining, backlog, retry)


def rate_take(*, key: str, rate: Rate, cost: int = 1) -> Decision:
    """Count ``cost`` requests against ``key`` if they fit; one statement."""
    params: dict[str, str | float] = {
        "key": key,
        "increment": cost * rate.period_s / rate.limit,
        "period": rate.period_s,
    }
    with connection.cursor() as cursor:
        cursor.execute(_sql(_TAKE), params)
        row = cursor.fetchone()
        if row is not None:
            return _decision(rate, row[0], row[1], allowed=True)
        cursor.execute(_sql(_PEEK), {"key": key})
        tat, now = cursor.fetchone()
    return _decision(rate, tat, now, allowed=False)


def database_now() -> str:
    """SQL for the database clock in epoch seconds, as the counters use it."""
    return _NOW[connection.vendor]


def failures_exhausted(tat: float, now: float, rate: Rate) -> Decision | None:
    """The refusal, if one more request would not fit a limit whose state is ``tat``
    at database time ``now`` (both read by the caller, e.g. in its own query), without
    counting it; else None."""
    interval = rate.period_s / rate.limit
    if max(tat, now) + interval - now <= rate.period_s:
        return None
    return _decision(rate, tat, now, allowed=False)


def failures_now_exhausted(key: str, rate: Rate) -> Decision | None:
    """failures_exhausted, reading the counter itself (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_PEEK), {"key": key})
        row = cursor.fetchone()
    return None if row is None else failures_exhausted(row[0], row[1], rate)


# -- failed authentication, per client IP ---------------------------------------------

AUTH_FAILURES = "authfail:"
THROTTLED = "authfail-refused:"
_COUNT = """
INSERT INTO security_ratecounter (key, tat) VALUES (%(key)s, 1)
ON CONFLICT (key) DO UPDATE SET tat = security_ratecounter.tat + 1
RETURNING tat
"""


def auth_failure_key(ip: str | None) -> str:
    return f"{AUTH_FAILURES}{ip or 'unknown'}"


def auth_failure_rate() -> Rate:
    """AUTH_FAILURE_RATE: failed authentications allowed per client address."""
    return Rate.parse(settings.AUTH_FAILURE_RATE)


def count_auth_failure(ip: str | None) -> Decision:
    """Count one failed authentication against ``ip``; not allowed once over the limit."""
    return rate_take(key=auth_failure_key(ip), rate=auth_failure_rate())


def count_throttled(*, ip: str | None, window_s: float, now_s: float, kind: str = THROTTLED) -> int:
    """How many refusals this IP has had while throttled in the current window, this
    one included. The first of a window clears the IP's earlier windows."""
    prefix = f"{kind}{ip or 'unknown'}:"
    key = f"{prefix}{int(now_s // window_s)}"
    with connection.cursor() as cursor:
        cursor.execute(_COUNT, {"key": key})
        count = int(cursor.fetchone()[0])
        if count == 1:
            cursor.execute(
                "DELETE FROM security_ratecounter WHERE key LIKE %(prefix)s AND key <> %(key)s",
                {"prefix": prefix + "%", "key": key},
            )
    return count


# -- budgets taken in bulk (a queue's rate limit, charged by pull) -------------------------
# The caller serialises takers of one key (pull holds its queue's row lock), so reading
# the budget and charging what was used are two statements without a race.

_CHARGE = """
INSERT INTO security_ratecounter (key, tat) VALUES (%(key)s, {now} + %(increment)s)
ON CONFLICT (key) DO UPDATE
    SET tat = {max}(security_ratecounter.tat, {now}) + %(increment)s
"""


def rate_available(*, key: str, rate: Rate) -> int:
    """How many requests under ``key`` would fit now."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_PEEK), {"key": key})
        row = cursor.fetchone()
        if row is None:
            return rate.limit
        tat, now = row
    return _decision(rate, tat, now, allowed=True).remaining


def rate_charge(*, key: str, rate: Rate, cost: int) -> None:
    """Count ``cost`` requests under ``key`` (the caller checked they fit)."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_CHARGE), {"key": key, "increment": cost * rate.period_s / rate.limit})

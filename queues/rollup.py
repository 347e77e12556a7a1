"""The per-minute rollup (queues.statsmodels) read and kept: history counts for the
dashboard, chart series for 1 h, 24 h and 7 d, run-time percentiles from the histogram,
and the scheduler's upkeep (fold each minute's stripes into one row, drop minutes older
than ``FLASHQ_STATS_DAYS``). Nothing here reads the jobs table.

Percentiles are read from the log-scale histogram: the rank's bucket, interpolated
linearly between its bounds. The true value lies in the same bucket, whose upper bound
is twice its lower, so a figure is at most a factor of 2 off (less in practice); runs
under 1 ms read as under 1 ms, runs of 2**22 ms (~70 min) or more as 2**22 ms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from .statsmodels import BUCKET_LOWER_MS, COUNTS, HISTOGRAM, JobMinute

SUMS = (*COUNTS, "run_ms", *HISTOGRAM)
#: Chart ranges: how far back, and the width of one point (s).
RANGES: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60),
    "24h": (timedelta(days=1), 300),
    "7d": (timedelta(days=7), 3600),
}
#: Minutes older than this are folded (a writer still running may add to an older
#: minute: its share is folded at the next run).
FOLD_AFTER = timedelta(minutes=2)
# Two schedulers never fold at once (pg_try_advisory_xact_lock's key, "flashQ rollup").
_FOLD_LOCK = 0x666C6F6C6C7570


def minute_end(now: datetime) -> datetime:
    """The end (exclusive) of the minute ``now`` is in: windows end there, so they hold
    whole minutes of the rollup and the job list's filters match them."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


class PointStart(models.Func):
    """The start of the ``step``-second chart point a minute falls in (points are
    aligned on the epoch); PostgreSQL bins with date_bin, SQLite with epoch seconds."""

    output_field = models.DateTimeField()

    def __init__(self, expression: Any, *, step: int) -> None:
        super().__init__(expression)
        self.step = int(step)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = (
            f"date_bin('{self.step} seconds'::interval, %(expressions)s, "
            "TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        )
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # '%%%%s': strftime's %s once the template and the parameters are filled in.
        template = (
            f"datetime(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / {self.step} "
            f"* {self.step}, 'unixepoch')"
        )
        return self.as_sql(compiler, connection, template=template, **extra)


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the run times counted in ``histogram`` (ms), None
    when it counts none."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    below = 0
    for bucket, count in enumerate(histogram):
        if count and below + count >= rank:
            lower = BUCKET_LOWER_MS[bucket]
            if bucket == len(histogram) - 1:
                return float(lower)
            upper = BUCKET_LOWER_MS[bucket + 1]
            return lower + (upper - lower) * max(0.0, rank - below) / count
        below += count
    return float(BUCKET_LOWER_MS[-1])


def history_counts(
    *, queue_ids: Iterable[int], windows: dict[str, tuple[datetime, datetime]]
) -> dict[int, dict[str, int]]:
    """Per queue: each count of COUNTS in each named window ``[since, until)``, as
    ``{"failed_1h": ...}``; one grouped query (jobminute_minute_idx)."""
    ids = list(queue_ids)
    if not ids or not windows:
        return {}
    earliest = min(since for since, _ in windows.values())
    sums = {
        f"{kind}_{name}": Sum(kind, filter=Q(minute__gte=since, minute__lt=until))
        for name, (since, until) in windows.items()
        for kind in COUNTS
    }
    rows = (
        JobMinute.objects.filter(queue_id__in=ids, minute__gte=earliest)
        .values("queue_id")
        .annotate(**sums)
        .order_by()
    )
    return {row.pop("queue_id"): {k: int(v or 0) for k, v in row.items()} for row in rows}


def chart_series(
    *, queue_ids: Iterable[int], range_name: str, now: datetime | None = None
) -> dict[str, Any]:
    """The chart of ``range_name`` (RANGES) for the queues ``queue_ids`` together: per
    point (``t``, epoch seconds at its start) the counts of each kind and the run-time
    p50 and p95 (ms, None without a completed job). One grouped range scan."""
    span, step = RANGES[range_name]
    end = minute_end(now or timezone.now())
    first = (int((end - span).timestamp()) // step) * step
    last = (int(end.timestamp()) - 1) // step * step
    points = list(range(first, last + 1, step))
    series: dict[str, list[Any]] = {name: [0] * len(points) for name in COUNTS}
    series |= {"p50_ms": [None] * len(points), "p95_ms": [None] * len(points)}
    ids = list(queue_ids)
    if ids:
        rows = (
            JobMinute.objects.filter(
                queue_id__in=ids,
                minute__gte=datetime.fromtimestamp(first, tz=UTC),
                minute__lt=end,
            )
            .annotate(point=PointStart("minute", step=step))
            .values("point")
            .annotate(**{name: Sum(name) for name in (*COUNTS, *HISTOGRAM)})
            .order_by("point")
        )
        for row in rows:
            index = (int(row["point"].timestamp()) - first) // step
            if not 0 <= index < len(points):
                continue
            for name in COUNTS:
                series[name][index] = int(row[name] or 0)
            histogram = [int(row[name] or 0) for name in HISTOGRAM]
            series["p50_ms"][index] = percentile(histogram, 0.5)
            series["p95_ms"][index] = percentile(histogram, 0.95)
    return {"range": range_name, "step": step, "t": points, **series}


def rollup_prune(*, now: datetime | None = None) -> tuple[int, int]:
    """The scheduler's upkeep, every minute: fold the stripes of minutes older than
    FOLD_AFTER into one row each (PostgreSQL; SQLite writes one row per minute), then
    delete minutes older than FLASHQ_STATS_DAYS. Returns (rows folded, rows deleted)."""
    now = now or timezone.now()
    folded = _fold(before=now - FOLD_AFTER) if connection.vendor == "postgresql" else 0
    cutoff = now - timedelta(days=settings.FLASHQ_STATS_DAYS)
    with connection.cursor() as cursor:
        # jobminute_minute_idx; a plain DELETE (the table is small: queues x minutes).
        cursor.execute("DELETE FROM queues_jobminute WHERE minute < %s", [cutoff])
        deleted = cursor.rowcount
    return folded, deleted


_COLUMNS = ", ".join(("queue_id", "minute", "stripe", *SUMS))
_FOLD = f"""
WITH due AS (
    SELECT queue_id, minute, stripe FROM queues_jobminute
    WHERE minute < %s AND stripe <> 0
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM queues_jobminute m USING due
    WHERE m.queue_id = due.queue_id AND m.minute = due.minute AND m.stripe = due.stripe
    RETURNING m.*
)
INSERT INTO queues_jobminute AS m ({_COLUMNS})
SELECT queue_id, minute, 0, {", ".join(f"sum({name})" for name in SUMS)}
FROM gone GROUP BY queue_id, minute ORDER BY queue_id, minute
ON CONFLICT (queue_id, minute, stripe) DO UPDATE SET
    {", ".join(f"{name} = m.{name} + EXCLUDED.{name}" for name in SUMS)}
"""  # noqa: S608 (built from this module's constants only)


def _fold(*, before: datetime) -> int:
    """Move the writers' stripes (``stripe <> 0``) of the minutes before ``before`` into
    stripe 0. Rows a running transaction still holds are skipped (SKIP LOCKED: the fold
    never waits on a writer, so the two cannot deadlock) and folded at a later run."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_FOLD_LOCK])
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute(_FOLD, [before])
        return int(cursor.rowcount)

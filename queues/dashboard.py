"""The admin's home: per queue, what the database says (so the figures survive restarts
and agree across app servers). Reads only; a handful of grouped queries.

Counts by state are now, by reported state (``delayed`` apart from ``waiting``, a
waiting job past its ttl ``expired``), as the job list's state filter counts them.
Completed and failed in the last hour and day, and the failure rate, are history: events
counted by the per-minute rollup (queues.rollup), which a retry, retention or an erasure
never lowers; a job failing twice counts twice. Their windows are whole minutes ending
with the current one (``windows``), which the job list's date filters can repeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from .models import Job, JobState, Queue
from .rollup import history_counts, minute_end
from .selectors import DELAYED, REPORTED_STATES

# The columns of counts by state, in this order (the page's header and each row's
# ``states``, which keeps it).
STATES: tuple[str, ...] = tuple(str(state) for state in REPORTED_STATES)
#: The history windows, by name.
SPANS = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}


def windows(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Each history window as ``[since, until)``, fixed at ``now``."""
    end = minute_end(now)
    return {name: (end - span, end) for name, span in SPANS.items()}


def queue_overview(
    *, queues: QuerySet[Queue] | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The figures of ``queues`` (default: all)."""
    now = now or timezone.now()
    chosen = (queues if queues is not None else Queue.objects.all()).order_by("name")
    queues_by_pk = {queue.pk: queue for queue in chosen}
    rows: dict[int, dict[str, Any]] = {
        pk: {
            "id": pk,
            "name": queue.name,
            "paused": queue.paused,
            "legal_hold": queue.legal_hold,
            "rate_limit": (
                f"{queue.rate_limit_max} / {queue.rate_limit_duration_ms} ms"
                if queue.rate_limit_max
                else ""
            ),
            "concurrency": queue.concurrency_max or "",
            "states": dict.fromkeys(STATES, 0),
            "oldest_waiting_s": None,
            "completed_1h": 0,
            "failed_1h": 0,
            "completed_24h": 0,
            "failed_24h": 0,
            "failure_rate_24h": None,
        }
        for pk, queue in queues_by_pk.items()
    }
    jobs = Job.objects.filter(queue_id__in=list(queues_by_pk))
    for item in jobs.values("queue_id", "state").annotate(n=Count("id")).order_by():
        rows[item["queue_id"]]["states"][item["state"]] = item["n"]
    _split_waiting(rows, jobs, now)
    history = history_counts(queue_ids=list(rows), windows=windows(now))
    for pk, row in rows.items():
        counts = history.get(pk, {})
        for key in ("completed_1h", "failed_1h", "completed_24h", "failed_24h"):
            row[key] = counts.get(key, 0)
        done = row["completed_24h"] + row["failed_24h"]
        row["failure_rate_24h"] = round(row["failed_24h"] / done, 4) if done else None
    return list(rows.values())


def _split_waiting(rows: dict[int, dict[str, Any]], jobs: QuerySet[Job], now: datetime) -> None:
    """Waiting jobs as reported: a future run_at is ``delayed``, a past ttl ``expired``
    (selectors.jobs_in_state's rule); the oldest ready one's age. One grouped query over
    the waiting jobs (job_queue_state_idx)."""
    expired = Q(expires_at__lte=now)
    waiting = (
        jobs.filter(state=JobState.WAITING)
        .values("queue_id")
        .annotate(
            expired=Count("id", filter=expired),
            delayed=Count("id", filter=Q(run_at__gt=now) & ~expired),
            oldest=Min("created_at", filter=Q(run_at__lte=now) & ~expired),
        )
        .order_by()
    )
    for item in waiting:
        row = rows[item["queue_id"]]
        states = row["states"]
        states[JobState.WAITING] -= item["expired"] + item["delayed"]
        states[DELAYED] = item["delayed"]
        states[JobState.EXPIRED] += item["expired"]
        if item["oldest"] is not None:
            row["oldest_waiting_s"] = int((now - item["oldest"]).total_seconds())

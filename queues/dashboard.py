"""The admin's home: per queue, what the database says now (so the figures survive
restarts and agree across app servers). Reads only; a handful of grouped queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from .models import Job, JobState, Queue

# The columns of counts by state, in this order (the page's header and each row's
# ``states``, which keeps it).
STATES: tuple[str, ...] = tuple(JobState.values)


def queue_overview(
    *, queues: QuerySet[Queue] | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The figures of ``queues`` (default: all)."""
    now = now or timezone.now()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    chosen = (queues if queues is not None else Queue.objects.all()).order_by("name")
    queues_by_pk = {queue.pk: queue for queue in chosen}
    rows: dict[int, dict[str, Any]] = {
        pk: {
            "name": queue.name,
            "paused": queue.paused,
            "legal_hold": queue.legal_hold,
            "rate_limit": (
                f"{queue.rate_limit_max} / {queue.rate_limit_duration_ms} ms"
                if queue.rate_limit_max
                else ""
            ),
            "concurrency": queue.concurrency_max or "",
            "states": {state: 0 for state in STATES},
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
    for item in jobs.values("queue_id", "state").annotate(n=Count("id")):
        rows[item["queue_id"]]["states"][item["state"]] = item["n"]
    waiting = (
        jobs.filter(state=JobState.WAITING, run_at__lte=now)
        .values("queue_id")
        .annotate(oldest=Min("created_at"))
    )
    for item in waiting:
        rows[item["queue_id"]]["oldest_waiting_s"] = int((now - item["oldest"]).total_seconds())
    finished = (
        jobs.filter(state__in=(JobState.COMPLETED, JobState.FAILED), finished_at__gte=day)
        .values("queue_id", "state")
        .annotate(in_hour=Count("id", filter=Q(finished_at__gte=hour)), in_day=Count("id"))
    )
    for item in finished:
        row = rows[item["queue_id"]]
        row[f"{item['state']}_1h"] = item["in_hour"]
        row[f"{item['state']}_24h"] = item["in_day"]
    for row in rows.values():
        done = row["completed_24h"] + row["failed_24h"]
        row["failure_rate_24h"] = round(row["failed_24h"] / done, 4) if done else None
    return list(rows.values())

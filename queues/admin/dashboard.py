"""The dashboard's views: its figures with a link on every count (the job list filtered
to exactly those jobs), the JSON that refreshes them, and the charts' JSON (from the
per-minute rollup only, never the jobs table). Only queues the user may view
(queues.staffaccess); a staff user who may view none gets 403. The engine's internal
queues are never charted."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone

from kernel.limits import INTERNAL_QUEUE_PREFIX

from ..dashboard import STATES, queue_overview, windows
from ..models import Queue
from ..rollup import RANGES, chart_series
from ..staffaccess import may_on_some, queues_for

VIEW = "view_queue"
#: What the dashboard's help text says of its history counts.
HISTORY_HELP = (
    "Done and failed are history from the per-minute rollup: events in whole minutes up "
    "to now, so a job failing twice counts twice and a retry never lowers them. A failed "
    "count links to the jobs that failed in that window, whatever they did since."
)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _jobs_url(**params: Any) -> str:
    return f"{reverse('admin:queues_job_changelist')}?{urlencode(params)}"


def with_links(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Each row with ``links``: for each count, the job list filtered to exactly the
    jobs it counts (states by the state filter; done by ``finished_at`` in the window,
    failed by ``failed_at``, both fixed at ``now``)."""
    spans = windows(now)
    for row in rows:
        queue = {"queue__id__exact": row["id"]}
        links = {state: _jobs_url(**queue, state__exact=state) for state in STATES}
        for name, (since, until) in spans.items():
            window = {"gte": _iso(since), "lt": _iso(until)}
            links[f"completed_{name}"] = _jobs_url(
                **queue,
                state__exact="completed",
                **{f"finished_at__{op}": at for op, at in window.items()},
            )
            links[f"failed_{name}"] = _jobs_url(
                **queue, **{f"failed_at__{op}": at for op, at in window.items()}
            )
        row["links"] = links
        row["cells"] = [[state, row["states"][state], links[state]] for state in STATES]
    return rows


def visible_queues(request: HttpRequest) -> QuerySet[Queue]:
    """The queues the user may view; 403 when none."""
    if not may_on_some(request.user, VIEW):
        raise PermissionDenied
    return queues_for(request.user, VIEW)


def _one_or_all(request: HttpRequest) -> QuerySet[Queue]:
    """The visible queues, or only ``?queue=<id>`` when given (403 unless visible)."""
    visible = visible_queues(request)
    chosen = request.GET.get("queue")
    if chosen is None:
        return visible
    if not chosen.isdigit() or not visible.filter(pk=int(chosen)).exists():
        raise PermissionDenied
    return visible.filter(pk=int(chosen))


def dashboard_rows(queues: QuerySet[Queue], now: datetime | None = None) -> dict[str, Any]:
    """The figures of ``queues`` with their links, and the windows they cover."""
    now = now or timezone.now()
    spans = {name: [_iso(since), _iso(until)] for name, (since, until) in windows(now).items()}
    return {"queues": with_links(queue_overview(queues=queues, now=now), now), "windows": spans}


def dashboard_data(request: HttpRequest) -> JsonResponse:
    """``admin/dashboard.json[?queue=<id>]``: what refreshes the dashboard, or one
    queue's page."""
    return JsonResponse(dashboard_rows(_one_or_all(request)))


def charts_data(request: HttpRequest) -> JsonResponse:
    """``admin/charts.json?range=1h|24h|7d[&queue=<id>]``: the visible queues' (or one
    queue's) pushed, completed, failed and retried per point, and run-time p50/p95."""
    range_name = request.GET.get("range", "1h")
    if range_name not in RANGES:
        range_name = "1h"
    queues = _one_or_all(request).exclude(name__startswith=INTERNAL_QUEUE_PREFIX)
    ids = list(queues.values_list("pk", flat=True))
    response = JsonResponse(chart_series(queue_ids=ids, range_name=range_name))
    response["Cache-Control"] = "no-store"
    return response

"""The Workers page (``admin:queues_job_workers``, linked from the job list): per queue
the user may view, each token family that pulled in the last 15 minutes or holds a
lease, with the jobs in its hand and its last pull (queues.workers). Pull-model
workers register nowhere: this is what their pulls and leases show. Reading it records
nothing: it shows token names, counts and times, no payload."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from ..models import Queue
from ..workers import WORKERS_WINDOW, workers_recent


def workers_page(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, *, queues: QuerySet[Queue]
) -> TemplateResponse:
    """The page, for a user who may view jobs of ``queues`` (the caller checked it)."""
    now = timezone.now()
    changelist = reverse("admin:queues_job_changelist")
    queue_ids = {name: str(pk) for name, pk in queues.values_list("name", "pk")}
    rows = [
        {
            "worker": worker,
            "jobs_url": f"{changelist}?"
            + urlencode({"state__exact": "active", "queue__id__exact": queue_ids[worker.queue]}),
            "ago": int((now - worker.last_pull).total_seconds()) if worker.last_pull else None,
        }
        for worker in workers_recent(queues=queues, now=now)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Workers",
        "opts": model_admin.model._meta,
        "rows": rows,
        "window_minutes": int(WORKERS_WINDOW.total_seconds() // 60),
        "now": now,
    }
    return TemplateResponse(request, "admin/queues/job/workers.html", context)

"""The job list's columns, which depend on the state it is filtered to: the failed list
shows each job's error code, the first line of its error (in clear only to a user with
the reveal right on the job's queue, masked for everyone else, as on a job's page),
its attempts, when it failed and its subject; the active list who holds each lease and
until when. Times are shown to the second, in UTC.

What a column needs beyond the row (the lease holders' names, the errors' first lines)
is fetched once per page by ``prepare_page``, never per row."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from security.masking import MASKED
from security.selectors import holder_names

from .. import selectors, staffaccess, staffreads
from ..models import Job, JobState

FAILED = "failed"
ACTIVE = "active"
STATE_PARAM = "state__exact"


def _when(value: datetime | None) -> str:
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}" if value is not None else ""


def _time_column(field: str, description: str = "") -> Callable[[Job], str]:
    def column(job: Job) -> str:
        return _when(getattr(job, field))

    column.__name__ = field  # the cell's class: field-<name>
    return admin.display(description=description or field.replace("_", " "), ordering=field)(column)


run_at = _time_column("run_at")
created_at = _time_column("created_at")
started_at = _time_column("started_at")
finished_at = _time_column("finished_at")


failed_at = _time_column("failed_at", "failed at")


@admin.display(description="state", ordering="state")
def state(job: Job) -> str:
    """The reported state (``delayed`` for a waiting job whose run_at is to come). A
    function named ``state``, so the column keeps its ``field-state`` class."""
    return selectors.reported_state(job, timezone.now())


@admin.display(description="attempts", ordering="attempts")
def attempts(job: Job) -> str:
    return f"{job.attempts} / {job.max_attempts}"


@admin.display(description="error code", ordering="error_code")
def error_code(job: Job) -> str:
    return job.error_code


@admin.display(description="error")
def error(job: Job) -> str:
    """The first line of the error for a user who may reveal it (prepare_page fetched
    it), else masked, as a job's page shows it: ``[MASKED]``, or nothing when there is
    no error."""
    line: str | None = getattr(job, "_error_line", None)
    if line is not None:
        return line
    return MASKED if getattr(job, "has_error", False) else ""


@admin.display(description="lease holder", ordering="lease_owner")
def lease_holder(job: Job) -> str:
    """The token family holding the lease of an active job, by its current name."""
    if job.state != JobState.ACTIVE or not job.lease_owner:
        return ""
    return str(getattr(job, "_holder_name", job.lease_owner))


@admin.display(description="lease expires", ordering="lease_expires_at")
def lease_expires(job: Job) -> str:
    if job.state != JobState.ACTIVE or job.lease_expires_at is None:
        return ""
    expired = job.lease_expires_at <= timezone.now()
    return f"{_when(job.lease_expires_at)}{' (expired)' if expired else ''}"


COLUMNS: dict[str, list[Any]] = {
    FAILED: ["id", "queue", state, error_code, error, attempts, failed_at, "subject"],
    ACTIVE: ["id", "queue", state, attempts, lease_holder, lease_expires, started_at],
    "": [
        "id",
        "queue",
        state,
        "priority",
        attempts,
        run_at,
        created_at,
        finished_at,
        lease_holder,
    ],
}


def listed_state(request: HttpRequest) -> str:
    """Which columns the list shows: ``failed``, ``active`` or "" (any other). A range
    of failure times (the dashboard's failure counts link to one) is a failed list too,
    whatever became of its jobs since."""
    value = request.GET.get(STATE_PARAM, "")
    if not value and ("failed_at__gte" in request.GET or "failed_at__lt" in request.GET):
        return FAILED
    return value if value in (FAILED, ACTIVE) else ""


def prepare_page(rows: list[Job], *, request: HttpRequest) -> list[uuid.UUID]:
    """Fetch, for the page's ``rows``, what their columns show beyond the row itself:
    the names of the lease holders (one query), and on the failed list the first line
    of each error the user may reveal (one query for the queues they may reveal, one
    for the errors). Returns the ids of the jobs whose error is shown in clear."""
    holders = {job.lease_owner for job in rows if job.state == JobState.ACTIVE and job.lease_owner}
    if holders:
        names = holder_names(holders)
        for job in rows:
            job._holder_name = names.get(job.lease_owner, job.lease_owner)  # type: ignore[attr-defined]
    if listed_state(request) != FAILED:
        return []
    with_error = {job.queue_id for job in rows if getattr(job, "has_error", False)}
    if not with_error:
        return []
    revealable = set(
        staffaccess.queues_for(request.user, "reveal_queue")
        .filter(pk__in=with_error)
        .values_list("pk", flat=True)
    )
    readable = [job for job in rows if job.queue_id in revealable]
    lines = staffreads.job_error_lines(
        job_ids=[job.id for job in readable if getattr(job, "has_error", False)]
    )
    for job in rows:
        if job.id in lines:
            job._error_line = lines[job.id]  # type: ignore[attr-defined]
    return list(lines)

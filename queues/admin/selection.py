"""What "select all" on the job list acts on: the jobs the list counted, not whatever
matches by the time the action runs.

The list page carries ``listed_at``, when its rows were counted. Selected across pages,
an action acts on the jobs matching the list's filters that were created by then, so a
job pushed after the page loaded is never touched. Its confirmation page names how many
that is now (the true count, past the list's count cap too) and, when at most the cap,
carries their ids (``selection``): confirming acts on exactly those, less any that left
the filters meanwhile, never on one that came since. Past the cap the ids are not
carried (they could be millions): confirming acts on every job matching the filters
then, still created by ``listed_at``, as the banner and the confirmation page say.

A job created just before ``listed_at`` whose push committed just after the count is
the one case the bound lets in unseen (a push's transaction lasts milliseconds); the
confirmation page shows the count it acts on, and says when it differs from the list's.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import Job
from .daterange import parse_instant
from .joblist import BoundedCountPaginator

LISTED_AT = "listed_at"
LISTED_COUNT = "listed_count"
SELECTION = "selection"


class SelectionRefused(Exception):
    """The posted selection cannot be read: nothing is done."""


def selected_across(request: HttpRequest) -> bool:
    return bool(forms.BooleanField(required=False).to_python(request.POST.get("select_across")))


def listed_at(request: HttpRequest) -> datetime | None:
    text = request.POST.get(LISTED_AT, "")
    return parse_instant(text) if text else None


def bounded(request: HttpRequest, jobs: QuerySet[Job]) -> QuerySet[Job]:
    """``jobs`` (the list's filtered jobs) as far as a selection across pages takes
    them: created by the list's ``listed_at``, and among the ``selection`` its
    confirmation page carried, if any."""
    text = request.POST.get(LISTED_AT, "")
    moment = listed_at(request)
    if text and moment is None:
        raise SelectionRefused(f'"{text}" is not when a list was shown')
    if moment is not None:
        jobs = jobs.filter(created_at__lte=moment)
    carried = request.POST.get(SELECTION)
    if carried is not None:
        try:
            ids = [uuid.UUID(hex=part) for part in carried.split(",") if part]
        except ValueError as exc:
            raise SelectionRefused("the selection carried is not a list of job ids") from exc
        jobs = jobs.filter(id__in=ids)
    return jobs


def snapshot(jobs: QuerySet[Job]) -> list[uuid.UUID] | None:
    """The ids of ``jobs`` (sorted), or None when there are more than the list's count
    cap: those are acted on by their filters, not carried."""
    cap = BoundedCountPaginator.COUNT_CAP
    ids = sorted(jobs.order_by().values_list("id", flat=True)[: cap + 1])
    return None if len(ids) > cap else ids


def carried(ids: list[uuid.UUID]) -> str:
    return ",".join(job_id.hex for job_id in ids)


def listed_count(request: HttpRequest) -> int | None:
    text = request.POST.get(LISTED_COUNT, "")
    return int(text) if text.isdigit() else None

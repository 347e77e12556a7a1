"""The job list, built for a big table: a count that stops at a cap, payload columns
never loaded, a state filter by reported state (``delayed`` apart from ``waiting``),
a queue filter offering the queues the user may view, a tag filter offering only the
tags of jobs the user may see, and the filter a job
page's relations link to (its children, dependencies or dependents)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from .. import selectors, staffaccess
from ..models import Job
from ..relations import Relation, jobs_related
from .jobcolumns import FAILED, listed_state, prepare_page

PAYLOAD_COLUMNS = ("data", "result", "error", "errors")


class QueueFilter(admin.SimpleListFilter):
    """The queues the user may view (a short list from the queues table: Django's
    related-only filter read every visible job's queue id to offer the same). The
    parameter is the one that filter used, so links to it keep working."""

    title = "queue"
    parameter_name = "queue__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        visible = staffaccess.queues_for(request.user, "view_queue").order_by("name")
        return [(str(pk), name) for pk, name in visible.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if not self.value():
            return queryset
        try:
            return queryset.filter(queue_id=int(str(self.value())))
        except ValueError:
            raise IncorrectLookupParameters("the queue is a number") from None


class StateFilter(admin.SimpleListFilter):
    """The states getJobs reports: a waiting job whose run_at is still to come is
    ``delayed``, one past its ttl ``expired``. The parameter is the one Django's own
    state filter used, so links to it keep working."""

    title = "state"
    parameter_name = "state__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(state), str(state)) for state in selectors.REPORTED_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if not self.value():
            return queryset
        return selectors.jobs_in_state(jobs=queryset, state=str(self.value()))


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Only from jobs this user may see: tags can name people.
        tags = selectors.job_tags(jobs=model_admin.get_queryset(request))
        return [(tag, tag) for tag in tags]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if not self.value():
            return queryset
        # JSON containment is not portable (SQLite); the quoted tag in the JSON text is.
        as_text = Cast("tags", TextField())
        return queryset.annotate(tags_text=as_text).filter(
            tags_text__contains=json.dumps(self.value())
        )


class RelatedFilter(admin.SimpleListFilter):
    """``?related=children:<job id>`` (or parent, dependencies, dependents): the jobs so
    related to that job, among those the user may see. Offered only while in use: a job
    page's "and N more" links to it."""

    title = "related to a job"
    parameter_name = "related"

    def _parsed(self) -> tuple[Relation, uuid.UUID] | None:
        relation, _, job_id = str(self.value() or "").partition(":")
        try:
            return Relation(relation), uuid.UUID(job_id)
        except ValueError:
            return None

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Offered while in use, even malformed, so queryset() runs and refuses it.
        value = self.value()
        return [] if value is None else [(str(value), str(value).replace(":", " of ", 1))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.value() is None:
            return queryset
        parsed = self._parsed()
        if parsed is None:
            raise IncorrectLookupParameters("related: <relation>:<job id>")
        relation, job_id = parsed
        return jobs_related(jobs=queryset, relation=relation, job_id=job_id)


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (a LIMITed subquery), never the whole table: on a
    large table the list stays fast, and pages past the cap ask for a narrower filter.
    ``beyond_cap``: more rows match than the count says (it looks at one more)."""

    COUNT_CAP = 10_000

    @cached_property
    def _counted(self) -> int:
        rows: Any = self.object_list
        return int(rows[: self.COUNT_CAP + 1].count())

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.COUNT_CAP)

    @property
    def beyond_cap(self) -> bool:
        return self._counted > self.COUNT_CAP


class JobChangeList(ChangeList):
    """The list never loads payloads: the encrypted columns stay in the database (the
    failed list asks only whether each job has an error, and opens the first line of
    those the user may reveal: jobcolumns.prepare_page). ``listed_at``: when its rows
    were counted, which bounds what "select all" acts on (queues.admin.selection)."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        jobs = super().get_queryset(request, exclude_parameters).defer(*PAYLOAD_COLUMNS)
        if listed_state(request) == FAILED:
            jobs = jobs.annotate(
                has_error=ExpressionWrapper(Q(error__isnull=False), output_field=BooleanField())
            )
        return jobs

    def get_results(self, request: HttpRequest) -> None:
        self.listed_at = timezone.now()
        super().get_results(request)
        self.result_list = list(self.result_list)
        self.errors_in_clear = prepare_page(self.result_list, request=request)

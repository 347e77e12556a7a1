"""Jobs in the admin: the list, its search and filters (audited), and the retry, cancel,
delete, promote and cancel-flow actions. JobAdmin's docstring says who may do what."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import IGNORED_PARAMS
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import path

from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.selectors import audit_events_naming_job
from compliance.audit.staff import DeletedByActionAdmin, report_outcome, staff_actor
from kernel.problems import FlashqError

from .. import selectors, services, staffaccess, staffreads
from ..models import Job, Queue
from . import jobcolumns, selection
from .confirm import ReasonForm, confirmation_page
from .daterange import DateRangeFilter
from .jobbuttons import JobButtonsAdmin, flow_cancel_checked, job_buttons
from .jobdetail import JOB_DETAIL, JobDetailAdmin
from .joblist import (
    BoundedCountPaginator,
    JobChangeList,
    QueueFilter,
    RelatedFilter,
    StateFilter,
    TagFilter,
)
from .workers import workers_page


@admin.register(Job)
class JobAdmin(DeletedByActionAdmin, AuditHistoryAdmin, JobButtonsAdmin, JobDetailAdmin):
    """Jobs for operators. Retry, cancel, delete, promote (a delayed job, run now) and
    cancel flow (the whole flow a job belongs to, with the cancel right on that job's
    queue and on the flow root's) are actions on the selection and, where they apply,
    buttons on a job's page (queues.admin.jobbuttons): each
    declares its permission, asks for confirmation and a reason, and calls the same
    service as the API, audited with the staff user as actor. Payloads are shown
    decrypted with the queue's sensitive fields and the worker's free texts masked for
    every role, superusers included; a user with the reveal right on the job's queue
    (``reveal_queue``, or ``queues.reveal_job`` globally, which superusers hold) may
    reveal them once, for a reason. Opening a job, searching or filtering jobs and
    revealing are audited (queues.staffreads). The list's columns follow its state
    filter (jobcolumns), its Workers page lists who pulls (workers), and an action on
    a selection across pages acts on the jobs the list counted (selection)."""

    delete_action_label = "Delete the selected jobs"

    list_display = jobcolumns.COLUMNS[""]
    list_filter = [
        StateFilter,
        QueueFilter,
        ("created_at", DateRangeFilter),
        ("run_at", DateRangeFilter),
        ("finished_at", DateRangeFilter),
        ("failed_at", DateRangeFilter),
        TagFilter,
        RelatedFilter,
    ]
    list_select_related = ["queue"]
    show_full_result_count = False
    paginator = BoundedCountPaginator
    search_fields = ["=id", "=key", "=subject"]
    search_help_text = (
        "An exact job id, idempotency key or subject (keys and subjects match case), or "
        "words of an error text (in queues "
        f"you may reveal, searched in the newest {selectors.ERROR_SEARCH_WINDOW} jobs with an "
        "error). Searches and filters are audited."
    )
    fields = tuple(JOB_DETAIL)
    readonly_fields = tuple(JOB_DETAIL)
    actions = ["retry_jobs", "cancel_jobs", "delete_jobs", "promote_jobs", "cancel_flows"]
    change_form_template = "admin/queues/job/change_form.html"

    def audit_history(self, obj: Job) -> AuditHistory:
        # As the job page's own list (selectors.job_audit_events): none is older.
        since = obj.created_at - timedelta(minutes=1)
        naming = audit_events_naming_job(job_id=str(obj.id))
        return AuditHistory(where=naming & Q(created_at__gte=since), trail={"q": str(obj.id)})

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> Any:
        return JobChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        return jobcolumns.COLUMNS[jobcolumns.listed_state(request)]

    def get_urls(self) -> list[Any]:
        workers = self.admin_site.admin_view(self.workers_view)
        # Before Django's own: its "<object_id>/" catch-all would take this path.
        return [path("workers/", workers, name="queues_job_workers"), *super().get_urls()]

    def workers_view(self, request: HttpRequest) -> Any:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return workers_page(self, request, queues=self.viewable_queues(request))

    def viewable_queues(self, request: HttpRequest) -> QuerySet[Queue]:
        """The queues whose jobs this user may see: every queue with the global
        ``view_job``, else those they may view (a lazy query)."""
        if request.user.has_perm("queues.view_job"):
            return Queue.objects.all()
        return staffaccess.queues_for(request.user, "view_queue")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        jobs = super().get_queryset(request).select_related("queue")
        if not request.user.has_perm("queues.view_job"):
            jobs = jobs.filter(queue__in=self.viewable_queues(request).values("pk"))
        return jobs

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.has_perm("queues.view_job"):
            return True
        if obj is None:
            return staffaccess.may_on_some(request.user, "view_queue")
        return staffaccess.may_on(request.user, "view_queue", obj.queue)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Each exact match on its own (an id by its primary key, a subject by its
        # index): Django's "=field" search compares UPPER() of every column in one OR,
        # which no index serves (250 ms at 100,000 jobs).
        found = set(selectors.jobs_named(jobs=queryset, term=term))
        # Error texts are masked without the reveal right: searching them elsewhere
        # would tell what they say, one guess at a time. An id is not searched there.
        if len(term) >= 3 and not selectors.is_job_id(term):
            found.update(
                selectors.jobs_with_error_containing(
                    jobs=queryset,
                    term=term.lower(),
                    queues=staffaccess.queues_for(request.user, "reveal_queue"),
                )
            )
        return queryset.filter(id__in=found), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:delete")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:retry")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:cancel")

    def has_promote_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:promote")

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Only a job the user may view gets here (change_view checked it).
        if obj is not None:
            staffreads.job_view_record(job=obj, actor=staff_actor(request))
            context["may_reveal"] = staffaccess.may_on(request.user, "reveal_queue", obj.queue)
            context.update(self.relations_context(request, obj))
            context["job_buttons"] = job_buttons(request.user, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        listing = getattr(response, "context_data", None) or {}
        cl = listing.get("cl")
        filters = {
            key: ",".join(values)
            for key, values in (cl.filter_params.items() if cl is not None else ())
            if key not in IGNORED_PARAMS
        }
        if cl is not None and (cl.query or filters):
            staffreads.jobs_search_record(
                search=cl.query,
                filters=filters,
                shown=[(job.id, job.queue.name) for job in cl.result_list],
                actor=staff_actor(request),
                errors_in_clear=getattr(cl, "errors_in_clear", ()),
            )
        return response

    def response_action(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        if selection.selected_across(request):
            try:
                queryset = selection.bounded(request, queryset)
            except selection.SelectionRefused as exc:
                self.message_user(request, f"Nothing was done: {exc}.", messages.ERROR)
                return None
        return super().response_action(request, queryset)

    # -- actions: confirm, then call the service per job ---------------------------------

    def _confirmed(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        *,
        verb: str,
        act: Callable[[Job, str], object],
        right: str = "",
        question: str = "{verb} {count} job(s)?",
    ) -> Any:
        """``right``: the operating right asked on each job's queue (default ``verb``);
        ``question``: what the confirmation page asks ({verb} and {count} filled in)."""
        right = right or verb
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            done, refused = 0, []
            for job in queryset.order_by("id"):
                if not staffaccess.may_on(request.user, f"operate_queue:{right}", job.queue):
                    refused.append(f"{job.id}: you may not {right} jobs of {job.queue.name}")
                    continue
                try:
                    act(job, form.cleaned_data["reason"])
                    done += 1
                except FlashqError as exc:
                    refused.append(f"{job.id}: {exc.detail}")
            report_outcome(self, request, verb=verb, noun="job", done=done, refused=refused)
            return None
        count, hidden, note = self._selection(request, queryset)
        first = queryset.order_by("id")[:100]
        return confirmation_page(
            self,
            request,
            question=question.format(verb=verb.capitalize(), count=count),
            verb=verb,
            items=(f"{job.id} ({job.queue.name}, {job.state})" for job in first),
            count=count,
            form=form,
            hidden=hidden,
            note=note,
        )

    def _selection(
        self, request: HttpRequest, queryset: QuerySet[Job]
    ) -> tuple[int, dict[str, str], str]:
        """How many jobs the confirmation page says it will act on, the fields that
        carry a selection across pages to the confirmation, and what it says of it."""
        if not selection.selected_across(request):
            return queryset.count(), {}, ""
        hidden = {selection.LISTED_AT: request.POST.get(selection.LISTED_AT, "")}
        ids = selection.snapshot(queryset)
        if ids is None:
            count = queryset.count()
            return (
                count,
                hidden,
                (
                    f"This acts on every job matching the list's filters, {count} now (more than "
                    "the list counts), created before the list was shown."
                ),
            )
        hidden[selection.SELECTION] = selection.carried(ids)
        shown = selection.listed_count(request)
        note = ""
        if shown is not None and shown != len(ids):
            note = (
                f"The list showed {shown} job(s) when it was loaded; {len(ids)} job(s) "
                "created by then match its filters now: this acts on those."
            )
        return len(ids), hidden, note

    @admin.action(permissions=["retry"], description="Retry the selected jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="retry",
            act=lambda job, why: services.job_retry(job_id=job.id, actor=actor, reason=why),
        )

    @admin.action(permissions=["cancel"], description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="cancel",
            act=lambda job, why: services.job_cancel(job_id=job.id, actor=actor, reason=why),
        )

    @admin.action(permissions=["delete"], description="Delete the selected jobs")
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="delete",
            act=lambda job, why: services.jobs_delete(job_ids=[job.id], reason=why, actor=actor),
        )

    @admin.action(
        permissions=["promote"], description="Promote the selected delayed jobs (run now)"
    )
    def promote_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="promote",
            act=lambda job, why: services.job_promote(job_id=job.id, actor=actor, reason=why),
        )

    @admin.action(permissions=["cancel"], description="Cancel the flows of the selected jobs")
    def cancel_flows(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="cancel flow",
            right="cancel",
            question="Cancel the whole flow of each of these {count} job(s)?",
            act=lambda job, why: flow_cancel_checked(request.user, job, why, actor),
        )

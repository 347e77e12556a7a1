"""Queues and jobs in the admin. Queue changes go through queues.services and are
audited with the staff user as actor; pausing, resuming and legal holds are actions
that ask for a reason, never a field. Jobs are read-only here: payloads are masked for
every role, revealed only on request (queues.staffreads), and reads are audited."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import IGNORED_PARAMS, ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.crypto import constant_time_compare
from django.utils.functional import cached_property
from django.utils.html import format_html_join
from guardian.admin import GuardedModelAdminMixin

from compliance.audit.staff import ServiceModelAdmin, staff_actor
from kernel.problems import FlashqError

from . import selectors, services, staffaccess, staffreads
from .models import Job, Queue


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500, help_text="Why (kept in the audit trail), e.g. a ticket reference."
    )


def confirmation_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    question: str,
    verb: str,
    items: Iterable[str],
    count: int,
    form: ReasonForm,
) -> TemplateResponse:
    """The page an action shows before it acts: what it will act on, and a reason."""
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": question,
        "opts": opts,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "items": list(items)[:100],
        "count": count,
        "verb": verb,
        "form": form,
        "action": request.POST.get("action", ""),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/queues/confirm_action.html", context)


class QueueForm(forms.ModelForm):
    class Meta:
        model = Queue
        fields = [  # the editable ones; QueueAdmin decides which it shows read-only
            "name",
            "subject_path",
            "json_schema",
            "sensitive_fields",
            "pii_fields",
            "rate_limit_max",
            "rate_limit_duration_ms",
            "concurrency_max",
            "max_job_bytes",
            "card_allowlist",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        pair = (data.get("rate_limit_max"), data.get("rate_limit_duration_ms"))
        if (pair[0] is None) != (pair[1] is None):
            raise forms.ValidationError(
                "A rate limit is a maximum and a duration together (or neither)."
            )
        return data


@admin.register(Queue)
class QueueAdmin(GuardedModelAdminMixin, ServiceModelAdmin):
    form = QueueForm
    # Django's change form; ours adds the "Object permissions" link for superusers only.
    change_form_template = "admin/queues/queue/change_form.html"  # type: ignore[misc]
    list_display = ["name", "paused", "legal_hold", "subject_path", "created_at"]
    list_filter = ["paused", "legal_hold"]
    search_fields = ["name"]
    fields = [
        "name",
        "subject_path",
        "json_schema",
        "sensitive_fields",
        "pii_fields",
        "rate_limit_max",
        "rate_limit_duration_ms",
        "concurrency_max",
        "max_job_bytes",
        "card_allowlist",
        "paused",
        "legal_hold",
        "created_at",
    ]
    actions = ["pause_queues", "resume_queues", "place_legal_hold", "release_legal_hold"]

    # Per-queue rights (queues.staffaccess): a user without a global right sees and
    # changes only the queues granted to them. Superusers grant them on each queue's
    # "Object permissions" page (django-guardian) or with manage.py grant_queue.
    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        visible = staffaccess.queues_for(request.user, "view_queue")
        queues: QuerySet[Queue] = Queue.objects.all()
        return queues.filter(pk__in=visible.values("pk"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, "view_queue")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return staffaccess.may_on_some(request.user, "view_queue")
        return staffaccess.may_on(request.user, "view_queue", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return staffaccess.may_on_some(request.user, "change_queue")
        return staffaccess.may_on(request.user, "change_queue", obj)

    # django-guardian's object-permission pages grant rights: superusers only (guardian
    # itself would let anyone who may change one queue grant anything on any queue).
    def obj_perms_manage_view(self, request: HttpRequest, object_pk: str) -> Any:
        self._superuser_only(request)
        return super().obj_perms_manage_view(request, object_pk)  # type: ignore[no-untyped-call]

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: str, user_id: Any) -> Any:
        self._superuser_only(request)
        return super().obj_perms_manage_user_view(request, object_pk, user_id)  # type: ignore[no-untyped-call]

    def obj_perms_manage_group_view(
        self, request: HttpRequest, object_pk: str, group_id: Any
    ) -> Any:
        self._superuser_only(request)
        return super().obj_perms_manage_group_view(request, object_pk, group_id)  # type: ignore[no-untyped-call]

    @staticmethod
    def _superuser_only(request: HttpRequest) -> None:
        if not request.user.is_superuser:
            raise PermissionDenied("Only superusers grant per-queue rights.")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A queue's name is what permissions match: fixed once it exists. What is masked
        # or redacted is a privacy control, not an operating setting: superusers only
        # (an operator could otherwise unmask what the reveal right guards).
        fixed = ["paused", "legal_hold", "created_at", *(["name"] if obj is not None else [])]
        if not request.user.is_superuser:
            fixed += ["sensitive_fields", "pii_fields", "card_allowlist"]
        return fixed

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Queue, form: ModelForm, change: bool) -> None:
        actor = staff_actor(request)
        subject_path = form.cleaned_data["subject_path"]
        if change:
            services.queue_update(
                name=obj.name,
                subject_path=subject_path,
                card_allowlist=form.cleaned_data.get("card_allowlist", obj.card_allowlist),
                max_job_bytes=form.cleaned_data.get("max_job_bytes"),
                json_schema=form.cleaned_data.get("json_schema"),
                sensitive_fields=form.cleaned_data.get("sensitive_fields", obj.sensitive_fields),
                pii_fields=form.cleaned_data.get("pii_fields", obj.pii_fields),
                actor=actor,
            )
            self._save_limits(obj, form, actor)
        else:
            created = services.queue_create(name=obj.name, subject_path=subject_path, actor=actor)
            obj.pk = created.pk

    def _save_limits(self, obj: Queue, form: ModelForm, actor: Any) -> None:
        """setRateLimit / setConcurrency, as the API's admin routes do, when changed."""
        stored = Queue.objects.get(pk=obj.pk)
        data = form.cleaned_data
        rate = (data.get("rate_limit_max"), data.get("rate_limit_duration_ms"))
        if rate != (stored.rate_limit_max, stored.rate_limit_duration_ms):
            services.queue_set_rate_limit(
                name=obj.name, max_jobs=rate[0], duration_ms=rate[1], actor=actor
            )
        if data.get("concurrency_max") != stored.concurrency_max:
            services.queue_set_concurrency(
                name=obj.name, max_active=data.get("concurrency_max"), actor=actor
            )

    def _changeable(self, request: HttpRequest, queryset: QuerySet[Queue]) -> list[str]:
        allowed = staffaccess.queues_for(request.user, "change_queue")
        return list(
            queryset.filter(pk__in=allowed.values("pk"))
            .order_by("name")
            .values_list("name", flat=True)
        )

    def _confirmed(
        self,
        request: HttpRequest,
        queryset: QuerySet[Queue],
        *,
        verb: str,
        question: str,
        done: str,
        act: Callable[[str, str], object],
    ) -> Any:
        """Ask for a reason, then ``act(name, reason)`` on each selected queue the user
        may change (the others are left alone, as for jobs)."""
        names = self._changeable(request, queryset)
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            for name in names:
                act(name, form.cleaned_data["reason"])
            self.message_user(request, f"{done} {len(names)} queue(s).", messages.SUCCESS)
            return None
        return confirmation_page(
            self,
            request,
            question=question.format(count=len(names)),
            verb=verb,
            items=names,
            count=len(names),
            form=form,
        )

    @admin.action(permissions=["change"], description="Pause the selected queues")
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="pause",
            question="Pause these {count} queue(s)?",
            done="Paused",
            act=lambda name, why: services.queue_set_paused(
                name=name, paused=True, reason=why, actor=actor
            ),
        )

    @admin.action(permissions=["change"], description="Resume the selected queues")
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="resume",
            question="Resume these {count} queue(s)?",
            done="Resumed",
            act=lambda name, why: services.queue_set_paused(
                name=name, paused=False, reason=why, actor=actor
            ),
        )

    @admin.action(permissions=["change"], description="Place the selected queues under legal hold")
    def place_legal_hold(self, request: HttpRequest, queryset: QuerySet[Queue]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="place under legal hold",
            question="Place these {count} queue(s) under legal hold?",
            done="Placed a legal hold on",
            act=lambda name, why: services.queue_set_legal_hold(
                name=name, hold=True, reason=why, actor=actor
            ),
        )

    @admin.action(
        permissions=["change"], description="Release the legal hold of the selected queues"
    )
    def release_legal_hold(self, request: HttpRequest, queryset: QuerySet[Queue]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="release the legal hold",
            question="Release the legal hold of these {count} queue(s)?",
            done="Released the legal hold of",
            act=lambda name, why: services.queue_set_legal_hold(
                name=name, hold=False, reason=why, actor=actor
            ),
        )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


PAYLOAD_COLUMNS = ("data", "result", "error", "errors")


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


class RevealForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        help_text="Why you need the values in clear (kept in the audit trail), e.g. a ticket.",
    )


_JOB_DETAIL = [
    "id",
    "queue",
    "state",
    "priority",
    "attempts",
    "max_attempts",
    "key",
    "subject",
    "tags",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "progress",
    "masked_progress_message",
    "masked_data",
    "masked_result",
    "error_code",
    "last_error",
    "error_history",
    "audit_trail",
]


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (a LIMITed subquery), never the whole table: on a
    large table the list stays fast, and pages past the cap ask for a narrower filter."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows: Any = self.object_list
        return int(rows[: self.COUNT_CAP].count())


class JobChangeList(ChangeList):
    """The list never loads payloads: the encrypted columns stay in the database."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        return super().get_queryset(request, exclude_parameters).defer(*PAYLOAD_COLUMNS)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs for operators. Retry, cancel and delete are actions on one job or the
    selection: each declares its permission, asks for confirmation and a reason, and
    calls the same service as the API, audited with the staff user as actor. Payloads
    are shown decrypted with the queue's sensitive fields and the worker's free texts
    masked for every role, superusers included; a user with the reveal right on the
    job's queue (``reveal_queue``, or ``queues.reveal_job`` globally, which superusers
    hold) may reveal them once, for a reason. Opening a job, searching or filtering
    jobs and revealing are audited (queues.staffreads)."""

    list_display = ["id", "queue", "state", "priority", "attempts", "created_at", "finished_at"]
    list_filter = [
        "state",
        ("queue", admin.RelatedOnlyFieldListFilter),  # only queues of visible jobs
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
        TagFilter,
    ]
    list_select_related = ["queue"]
    show_full_result_count = False
    paginator = BoundedCountPaginator
    search_fields = ["=id", "=key", "=subject"]
    search_help_text = (
        "An exact job id, idempotency key or subject, or words of an error text (in queues "
        f"you may reveal, searched in the newest {selectors.ERROR_SEARCH_WINDOW} jobs with an "
        "error). Searches and filters are audited."
    )
    fields = tuple(_JOB_DETAIL)
    readonly_fields = tuple(_JOB_DETAIL)
    actions = ["retry_jobs", "cancel_jobs", "delete_jobs"]
    change_form_template = "admin/queues/job/change_form.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> Any:
        return JobChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        jobs = super().get_queryset(request).select_related("queue")
        if staffaccess.may_on_some(request.user, "view_queue") and not request.user.has_perm(
            "queues.view_job"
        ):
            visible = staffaccess.queues_for(request.user, "view_queue")
            jobs = jobs.filter(queue__in=visible.values("pk"))
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
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lower()
        if len(term) < 3:
            return found, duplicates
        # Error texts are masked without the reveal right: searching them elsewhere
        # would tell what they say, one guess at a time.
        matching = selectors.jobs_with_error_containing(
            jobs=queryset,
            term=term,
            queues=staffaccess.queues_for(request.user, "reveal_queue"),
        )
        if not matching:
            return found, duplicates
        return (found | queryset.filter(id__in=matching)), duplicates

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # delete_jobs goes through the service
        return actions

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

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        # Deleting goes through the action (confirmation, reason, service, audit).
        raise PermissionDenied("Delete jobs with the 'Delete the selected jobs' action.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, extra)

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
            )
        return response

    def get_urls(self) -> list[Any]:
        reveal = self.admin_site.admin_view(self.reveal_view)
        # Before Django's own: its "<object_id>/" catch-all would take this path.
        return [
            path("<path:object_id>/reveal/", reveal, name="queues_job_reveal"),
            *super().get_urls(),
        ]

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form asking for a reason. POST: the values in clear, once. The form
        carries a single-use nonce kept in the session, so reloading the revealed page
        (a re-POST) shows nothing more: it goes back to the masked job page."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such job.")
        actor = staff_actor(request)
        if not staffaccess.may_on(request.user, "reveal_queue", job.queue):
            staffreads.job_reveal_refusal(job=job, actor=actor)
            raise PermissionDenied("You may not reveal this queue's jobs.")
        once_key = f"flashq.reveal.{job.pk}"
        form = RevealForm(request.POST if request.method == "POST" else None)
        if request.method == "POST":
            issued = request.session.pop(once_key, "")
            if not issued or not constant_time_compare(issued, request.POST.get("once", "")):
                self.message_user(
                    request,
                    "Those values were shown once already; reveal again with a reason.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(reverse("admin:queues_job_change", args=[job.pk]))
            if form.is_valid():
                event_id = staffreads.job_reveal_record(
                    job=job, reason=form.cleaned_data["reason"], actor=actor
                )
                reading = staffreads.job_reading(job=job, revealed=True)
                return self._reveal_page(request, job, reading=reading, event_id=event_id)
        once = secrets.token_urlsafe(24)
        request.session[once_key] = once
        status = 400 if request.method == "POST" else 200
        return self._reveal_page(request, job, form=form, once=once, status=status)

    def _reveal_page(
        self,
        request: HttpRequest,
        job: Job,
        *,
        reading: staffreads.JobReading | None = None,
        event_id: int | None = None,
        form: RevealForm | None = None,
        once: str = "",
        status: int = 200,
    ) -> HttpResponse:
        revealed = (
            {
                "data": _pretty(reading.data),
                "result": _pretty(reading.result),
                "error": reading.error,
                "errors": _pretty(reading.errors),
                "progress_message": reading.progress_message,
            }
            if reading is not None
            else None
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reveal job {job.pk}",
            "opts": self.model._meta,
            "job": job,
            "revealed": revealed,
            "event_id": event_id,
            "form": form,
            "once": once,
        }
        response = TemplateResponse(request, "admin/queues/job/reveal.html", context, status=status)
        # Values in clear must not outlive this response (admin_view adds this too).
        response["Cache-Control"] = "no-store, private"
        return response

    def _reading(self, job: Job) -> staffreads.JobReading:
        reading: staffreads.JobReading | None = getattr(job, "_admin_reading", None)
        if reading is None:
            reading = staffreads.job_reading(job=job, revealed=False)
            job._admin_reading = reading  # type: ignore[attr-defined]
        return reading

    @admin.display(description="data")
    def masked_data(self, job: Job) -> str:
        return _pretty(self._reading(job).data)

    @admin.display(description="result")
    def masked_result(self, job: Job) -> str:
        return _pretty(self._reading(job).result)

    @admin.display(description="error")
    def last_error(self, job: Job) -> str:
        return self._reading(job).error

    @admin.display(description="error history")
    def error_history(self, job: Job) -> str:
        return _pretty(self._reading(job).errors)

    @admin.display(description="progress message")
    def masked_progress_message(self, job: Job) -> str:
        return self._reading(job).progress_message

    @admin.display(description="audit events")
    def audit_trail(self, job: Job) -> str:
        events = selectors.job_audit_events(job=job)
        return (
            format_html_join(
                "\n",
                "<div>{} {} {} {} by {}</div>",
                (
                    (f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.action, e.outcome, e.status, e.actor)
                    for e in events
                ),
            )
            or "none"
        )

    # -- actions: confirm, then call the service per job ---------------------------------

    def _confirmed(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        *,
        verb: str,
        act: Callable[[Job, str], object],
    ) -> Any:
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            done, refused = 0, []
            for job in queryset.order_by("id"):
                if not staffaccess.may_on(request.user, f"operate_queue:{verb}", job.queue):
                    refused.append(f"{job.id}: you may not {verb} jobs of {job.queue.name}")
                    continue
                try:
                    act(job, form.cleaned_data["reason"])
                    done += 1
                except FlashqError as exc:
                    refused.append(f"{job.id}: {exc.detail}")
            self.message_user(request, f"{verb.capitalize()}: {done} job(s).", messages.SUCCESS)
            for line in refused[:20]:
                self.message_user(request, line, messages.WARNING)
            return None
        count = queryset.count()
        first = queryset.order_by("id")[:100]
        return confirmation_page(
            self,
            request,
            question=f"{verb.capitalize()} {count} job(s)?",
            verb=verb,
            items=(f"{job.id} ({job.queue.name}, {job.state})" for job in first),
            count=count,
            form=form,
        )

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

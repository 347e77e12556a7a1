"""Queues in the admin. Created and changed through queues.services, audited with the
staff user as actor; a queue's name is fixed once it exists, and what is masked or
redacted (sensitive and PII fields, the card allow-list) is for superusers to change.
A user without a global right sees and changes only the queues granted to them
(queues.staffaccess): superusers grant them on a queue's "Object permissions" page or
with manage.py grant_queue. Pausing, resuming and legal holds are actions that ask for
a reason, never fields; queues are never deleted here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from guardian.admin import GuardedModelAdminMixin

from compliance.audit import Action
from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.staff import ServiceModelAdmin, report_outcome, staff_actor
from kernel import limits
from kernel.problems import FlashqError

from .. import services, staffaccess
from ..dashboard import STATES
from ..models import Queue
from .confirm import ReasonForm, confirmation_page
from .dashboard import HISTORY_HELP, dashboard_rows


class QueueForm(forms.ModelForm):
    # Left blank: unchanged.
    group_concurrency = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=limits.MAX_GROUP_CONCURRENCY,
        help_text="At most this many active jobs per group (a job's `group`).",
    )

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
            "group_concurrency",
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


# What a queue's History lists: what was done to the queue itself, not its jobs.
QUEUE_HISTORY = (
    Action.QUEUE_CREATE,
    Action.QUEUE_UPDATE,
    Action.PAUSE,
    Action.RESUME,
    Action.LEGAL_HOLD,
    Action.SET_RATE_LIMIT,
    Action.REMOVE_RATE_LIMIT,
    Action.SET_SCHEMA,
    Action.REMOVE_SCHEMA,
    Action.SET_CONCURRENCY,
    Action.REMOVE_CONCURRENCY,
    Action.SET_GROUP_CONCURRENCY,
    Action.REMOVE_GROUP_CONCURRENCY,
    Action.QUEUE_GRANT,
    Action.QUEUE_REVOKE,
    Action.STAFF_GRANT,  # on the queue's "Object permissions" page (or grant_queue)
    Action.STAFF_GRANT_REMOVE,
    Action.CLEAN,
    Action.RETRY_FAILED,
)


@admin.register(Queue)
class QueueAdmin(GuardedModelAdminMixin, AuditHistoryAdmin, ServiceModelAdmin):
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
        "group_concurrency",
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

    def audit_history(self, obj: Queue) -> AuditHistory:
        # By queue first: the index on (queue, created_at) narrows it to the queue's events.
        return AuditHistory.matching(queue=obj.name, action__in=",".join(QUEUE_HISTORY))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A queue not yet made has no creation time, pause or hold (actions set those).
        unset = ("paused", "legal_hold", "created_at")
        return self.fields if obj is not None else [f for f in self.fields if f not in unset]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A queue's name is what permissions match: fixed once it exists. What is masked
        # or redacted is a privacy control, not an operating setting: superusers only
        # (an operator could otherwise unmask what the reveal right guards).
        fixed = ["paused", "legal_hold", "created_at", "name"] if obj is not None else []
        if not request.user.is_superuser:
            fixed += ["sensitive_fields", "pii_fields", "card_allowlist"]
        return fixed

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Only a queue the user may view gets here: its figures and charts, refreshed live.
        if obj is not None:
            context.update(
                dashboard=dashboard_rows(Queue.objects.filter(pk=obj.pk))["queues"],
                dashboard_states=STATES,
                dashboard_help=HISTORY_HELP,
                queue_id=obj.pk,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

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
        """setRateLimit / setConcurrency / setGroupConcurrency, as the API's admin routes
        do, when changed."""
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
        group = data.get("group_concurrency")
        if group is not None and group != stored.group_concurrency:
            services.queue_set_group_concurrency(name=obj.name, max_active=group, actor=actor)

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
        act: Callable[[str, str], object],
    ) -> Any:
        """Ask for a reason, then ``act(name, reason)`` on each selected queue the user
        may change (the others are left alone, as for jobs)."""
        names = self._changeable(request, queryset)
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            acted, refused = 0, []
            for name in queryset.order_by("name").values_list("name", flat=True):
                if name not in names:
                    refused.append(f"{name}: you may not change this queue")
                    continue
                try:
                    act(name, form.cleaned_data["reason"])
                    acted += 1
                except FlashqError as exc:
                    refused.append(f"{name}: {exc.detail}")
            report_outcome(self, request, verb=verb, noun="queue", done=acted, refused=refused)
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
            act=lambda name, why: services.queue_set_legal_hold(
                name=name, hold=False, reason=why, actor=actor
            ),
        )

"""Schedules in the admin: listed per queue with their last and next run, read-only
(they are made and replaced through the API's PUT), and paused, resumed, triggered or
deleted by actions that ask for a reason and call the schedule services with the staff
user as actor. Rights follow the schedule's queue exactly as for its jobs
(queues.staffaccess): ``view_queue`` to see, ``operate_queue`` to act; globally
``queues.view_schedule`` sees every queue's, ``queues.change_schedule`` pauses, resumes
and triggers, ``queues.delete_schedule`` deletes. The template data is shown with the
queue's sensitive fields masked, for every role, with no reveal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.staff import (
    DeletedByActionAdmin,
    ServiceModelAdmin,
    report_outcome,
    staff_actor,
)
from kernel.problems import FlashqError
from security.masking import masked

from .. import services, staffaccess, staffreads
from ..models import Schedule
from .confirm import ReasonForm, confirmation_page

SCHEDULE_DETAIL = [
    "queue",
    "name",
    "cron",
    "every_ms",
    "time_zone",
    "paused",
    "next_run_at",
    "last_run_at",
    "last_job",
    "start_at",
    "end_at",
    "catch_up",
    "max_catch_up",
    "masked_data",
    "priority",
    "max_attempts",
    "backoff",
    "timeout_ms",
    "tags",
    "subject",
    "created_by",
    "created_at",
    "updated_at",
]


@admin.register(Schedule)
class ScheduleAdmin(DeletedByActionAdmin, AuditHistoryAdmin, ServiceModelAdmin):
    delete_action_label = "Delete the selected schedules"
    list_display = [
        "name",
        "queue",
        "timing",
        "time_zone",
        "paused",
        "last_run_at",
        "next_run_at",
        "last_job",
    ]
    list_filter = ["paused", ("queue", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["queue"]
    search_fields = ["name", "queue__name"]
    fields = tuple(SCHEDULE_DETAIL)
    readonly_fields = tuple(SCHEDULE_DETAIL)
    actions = ["pause_schedules", "resume_schedules", "trigger_schedules", "delete_schedules"]

    def audit_history(self, obj: Schedule) -> AuditHistory:
        return AuditHistory.matching(
            queue=obj.queue.name, action__startswith="schedule.", details__name=obj.name
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        schedules = super().get_queryset(request).select_related("queue")
        if request.user.has_perm("queues.view_schedule"):
            return schedules
        visible = staffaccess.queues_for(request.user, "view_queue")
        return schedules.filter(queue__in=visible.values("pk"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.has_perm("queues.view_schedule"):
            return True
        if obj is None:
            return staffaccess.may_on_some(request.user, "view_queue")
        return staffaccess.may_on(request.user, "view_queue", obj.queue)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by the API's PUT, with its validation of the template

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:schedule_delete")

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, "operate_queue:schedule")

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Only a schedule the user may view gets here (change_view checked it).
        if obj is not None:
            staffreads.schedule_view_record(schedule=obj, actor=staff_actor(request))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="cron / every")
    def timing(self, schedule: Schedule) -> str:
        return schedule.cron or f"every {schedule.every_ms} ms"

    @admin.display(description="last job")
    def last_job(self, schedule: Schedule) -> str:
        if schedule.last_job_id is None:
            return "-"
        url = reverse("admin:queues_job_change", args=[schedule.last_job_id])
        return format_html('<a href="{}">{}</a>', url, schedule.last_job_id)

    @admin.display(description="data")
    def masked_data(self, schedule: Schedule) -> str:
        hidden = schedule.queue.sensitive_fields or ()
        return json.dumps(masked(schedule.data, hidden), indent=2, ensure_ascii=False)

    # -- actions: confirm, then call the service per schedule ----------------------------

    def _confirmed(
        self,
        request: HttpRequest,
        queryset: QuerySet[Schedule],
        *,
        verb: str,
        right: str,
        act: Callable[[Schedule, str], object],
    ) -> Any:
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        chosen = list(queryset.select_related("queue").order_by("queue__name", "name"))
        if "confirm" in request.POST and form.is_valid():
            done, refused = 0, []
            for schedule in chosen:
                label = f"{schedule.queue.name}/{schedule.name}"
                if not staffaccess.may_on(request.user, right, schedule.queue):
                    refused.append(f"{label}: you may not {verb} schedules of this queue")
                    continue
                try:
                    act(schedule, form.cleaned_data["reason"])
                    done += 1
                except FlashqError as exc:
                    refused.append(f"{label}: {exc.detail}")
            report_outcome(self, request, verb=verb, noun="schedule", done=done, refused=refused)
            return None
        return confirmation_page(
            self,
            request,
            question=f"{verb.capitalize()} {len(chosen)} schedule(s)?",
            verb=verb,
            items=(f"{s.queue.name}/{s.name}" for s in chosen),
            count=len(chosen),
            form=form,
        )

    @admin.action(permissions=["operate"], description="Pause the selected schedules")
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="pause",
            right="operate_queue:schedule",
            act=lambda s, why: services.schedule_pause(
                queue_name=s.queue.name, name=s.name, actor=actor, reason=why
            ),
        )

    @admin.action(permissions=["operate"], description="Resume the selected schedules")
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="resume",
            right="operate_queue:schedule",
            act=lambda s, why: services.schedule_resume(
                queue_name=s.queue.name, name=s.name, actor=actor, reason=why
            ),
        )

    @admin.action(permissions=["operate"], description="Run the selected schedules once now")
    def trigger_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="trigger",
            right="operate_queue:schedule",
            act=lambda s, why: services.schedule_trigger(
                queue_name=s.queue.name, name=s.name, actor=actor, reason=why
            ),
        )

    @admin.action(permissions=["delete"], description="Delete the selected schedules")
    def delete_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="delete",
            right="operate_queue:schedule_delete",
            act=lambda s, why: services.schedule_delete(
                queue_name=s.queue.name, name=s.name, actor=actor, reason=why
            ),
        )

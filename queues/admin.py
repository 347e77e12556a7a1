"""Queues and jobs in the admin. Queue changes go through queues.services and are
audited with the staff user as actor; pausing and resuming are actions, never a field.
Jobs are read-only here for now."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from compliance.staff import ServiceModelAdmin, staff_actor
from security.masking import masked

from . import services
from .models import Job, Queue


@admin.register(Queue)
class QueueAdmin(ServiceModelAdmin):
    list_display = ["name", "paused", "legal_hold", "subject_path", "created_at"]
    list_filter = ["paused", "legal_hold"]
    search_fields = ["name"]
    fields = [
        "name",
        "subject_path",
        "json_schema",
        "sensitive_fields",
        "pii_fields",
        "max_job_bytes",
        "card_allowlist",
        "paused",
        "legal_hold",
        "created_at",
    ]
    actions = ["pause_queues", "resume_queues", "place_legal_hold", "release_legal_hold"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A queue's name is what permissions match: fixed once it exists.
        return ["paused", "legal_hold", "created_at", *(["name"] if obj is not None else [])]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Queue, form: ModelForm, change: bool) -> None:
        actor = staff_actor(request)
        subject_path = form.cleaned_data["subject_path"]
        if change:
            services.queue_update(
                name=obj.name,
                subject_path=subject_path,
                card_allowlist=form.cleaned_data.get("card_allowlist"),
                max_job_bytes=form.cleaned_data.get("max_job_bytes"),
                json_schema=form.cleaned_data.get("json_schema"),
                sensitive_fields=form.cleaned_data.get("sensitive_fields"),
                pii_fields=form.cleaned_data.get("pii_fields"),
                actor=actor,
            )
        else:
            created = services.queue_create(name=obj.name, subject_path=subject_path, actor=actor)
            obj.pk = created.pk

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[Queue], paused: bool) -> None:
        actor = staff_actor(request)
        names = list(queryset.order_by("name").values_list("name", flat=True))
        for name in names:
            services.queue_set_paused(name=name, paused=paused, actor=actor)
        verb = "Paused" if paused else "Resumed"
        self.message_user(request, f"{verb} {len(names)} queue(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Pause the selected queues")
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_paused(request, queryset, True)

    @admin.action(permissions=["change"], description="Resume the selected queues")
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_paused(request, queryset, False)

    def _set_hold(self, request: HttpRequest, queryset: QuerySet[Queue], hold: bool) -> None:
        actor = staff_actor(request)
        names = list(queryset.order_by("name").values_list("name", flat=True))
        for name in names:
            services.queue_set_legal_hold(name=name, hold=hold, reason="admin action", actor=actor)
        verb = "Placed a legal hold on" if hold else "Released the legal hold of"
        self.message_user(request, f"{verb} {len(names)} queue(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Place the selected queues under legal hold")
    def place_legal_hold(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_hold(request, queryset, True)

    @admin.action(
        permissions=["change"], description="Release the legal hold of the selected queues"
    )
    def release_legal_hold(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._set_hold(request, queryset, False)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only for now: job changes go through the services, which audit them.
    Payloads are shown decrypted with the queue's sensitive fields masked, for
    everyone (a per-queue reveal right for staff comes with the operators' admin)."""

    list_display = ["id", "queue", "state", "priority", "attempts", "created_at"]
    list_filter = ["state"]
    list_select_related = ["queue"]
    show_full_result_count = False
    search_fields = ["=id", "=key", "=subject"]
    readonly_fields = ["masked_data", "masked_result", "masked_errors"]

    @admin.display(description="data (sensitive fields masked)")
    def masked_data(self, job: Job) -> str:
        return _pretty(masked(job.data, job.queue.sensitive_fields or ()))

    @admin.display(description="result (sensitive fields masked)")
    def masked_result(self, job: Job) -> str:
        return _pretty(masked(job.result, job.queue.sensitive_fields or ()))

    @admin.display(description="errors")
    def masked_errors(self, job: Job) -> str:
        return _pretty(job.errors)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from . import services
from .models import AuditCheckpoint, AuditEvent, ErasureRequest, RetentionPolicy
from .staff import ServiceModelAdmin, staff_actor


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: nobody adds, edits or deletes them here, superusers
    included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only: nobody edits or deletes it here."""

    list_display = [
        "created_at",
        "action",
        "outcome",
        "status",
        "queue",
        "actor",
        "client_ip",
        "seq",
    ]
    list_filter = ["outcome", "action"]
    search_fields = ["=request_id", "queue", "actor"]
    show_full_result_count = False


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "events_removed", "reason"]


@admin.register(ErasureRequest)
class ErasureRequestAdmin(ReadOnlyAdmin):
    """Receipts of executed GDPR erasures (no personal data: the subject is a keyed
    pseudonym)."""

    list_display = ["created_at", "mode", "total", "operator", "reason", "subject_pseudonym"]
    list_filter = ["mode"]
    search_fields = ["=subject_pseudonym", "reason", "operator"]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(ServiceModelAdmin):
    """Saves and deletes go through compliance.services (audited, staff user as actor)."""

    list_display = ["target", "queue_pattern", "max_age_days"]
    list_filter = ["target"]
    actions = ["delete_policies"]

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass the service
        return actions

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: ModelForm, change: bool
    ) -> None:
        services.retention_policy_save(policy=obj, actor=staff_actor(request))

    def delete_model(self, request: HttpRequest, obj: RetentionPolicy) -> None:
        services.retention_policy_delete(policy_id=obj.pk, actor=staff_actor(request))

    @admin.action(permissions=["delete"], description="Delete the selected retention policies")
    def delete_policies(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        actor = staff_actor(request)
        for pk in list(queryset.values_list("pk", flat=True)):
            services.retention_policy_delete(policy_id=pk, actor=actor)

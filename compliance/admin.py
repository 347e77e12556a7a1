from __future__ import annotations

from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail is append-only: nobody edits or deletes it here."""

    list_display = ["created_at", "action", "outcome", "status", "queue", "actor", "client_ip"]
    list_filter = ["outcome", "action"]
    search_fields = ["=request_id", "queue", "actor"]
    show_full_result_count = False

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False

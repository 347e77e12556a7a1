from __future__ import annotations

from django.contrib import admin

from .models import Job, Queue


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "paused", "subject_path", "created_at"]
    list_filter = ["paused"]
    search_fields = ["name"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only for now: job changes go through the API's services, which audit them."""

    list_display = ["id", "queue", "state", "priority", "attempts", "created_at"]
    list_filter = ["state"]
    list_select_related = ["queue"]
    show_full_result_count = False
    search_fields = ["=id", "=key"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False

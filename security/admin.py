from __future__ import annotations

from django.contrib import admin

from .models import ApiToken, QueuePermission


class QueuePermissionInline(admin.TabularInline):
    model = QueuePermission
    extra = 0


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created with ``manage.py create_token`` (the secret is shown once);
    here they are inspected, given permissions, expired or revoked."""

    list_display = ["name", "public_id", "created_at", "expires_at", "revoked", "last_used_at"]
    list_filter = ["revoked"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id", "created_at", "revoked_at", "last_used_at"]
    exclude = ["secret_hash"]
    inlines = [QueuePermissionInline]

    def has_add_permission(self, request: object) -> bool:
        return False

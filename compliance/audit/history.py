"""An object's "History" in the admin: its audit events. Django's own history page
reads ``LogEntry``, which the admin never writes (every change goes through a service
and is audited there: compliance.audit.staff), so it was always empty. An admin that
mixes in ``AuditHistoryAdmin`` says which events name one of its objects; its History
page lists the latest of them to anyone who may view the object, with a link to the
same events in the audit trail for those who may read it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from .models import AuditEvent

#: The most events a History page lists (the audit trail has them all).
HISTORY_LIMIT = 100


@dataclass(frozen=True)
class AuditHistory:
    """The events naming one object, and the audit list's query string showing them
    (None when no filter of the list can)."""

    where: Q
    trail: dict[str, str] | None = field(default=None)

    @classmethod
    def matching(cls, **lookups: str) -> AuditHistory:
        """Events matching ``lookups`` (``__in`` values comma-separated, as the audit
        list reads them from its URL)."""
        where = Q(
            **{
                key: value.split(",") if key.endswith("__in") else value
                for key, value in lookups.items()
            }
        )
        return cls(where=where, trail=dict(lookups))


class AuditHistoryAdmin(admin.ModelAdmin):
    """Mixed into a ModelAdmin: its History page lists the object's audit events."""

    def audit_history(self, obj: Any) -> AuditHistory:
        raise NotImplementedError

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with that id.")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        history = self.audit_history(obj)
        # Newest first by time: an index on (queue, created_at) or created_at serves it.
        latest = AuditEvent.objects.filter(history.where).order_by("-created_at", "-id")
        events = [
            (event, json.dumps(event.details, sort_keys=True, ensure_ascii=False))
            for event in latest[:HISTORY_LIMIT]
        ]
        trail = None
        if history.trail is not None and request.user.has_perm("compliance.view_auditevent"):
            trail = (
                f"{reverse('admin:compliance_auditevent_changelist')}?{urlencode(history.trail)}"
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "object": obj,
            "opts": self.opts,
            "events": events,
            "limit": HISTORY_LIMIT,
            "trail_url": trail,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/audit_history.html", context)

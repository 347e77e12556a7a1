"""The actor of changes made in the admin: the logged-in staff user, for django-auditlog
and for the audit events of staff rights changed through Django's own forms
(compliance.staffrights).

Used instead of auditlog's own middleware, which also records ``X-Forwarded-For`` and
``X-Forwarded-Port`` as sent (the audit trail already has the trusted client address)
and would add its work to every API call, where the actor is a token, not a user (the
audit event, joined by request id, names it)."""

from __future__ import annotations

from collections.abc import Callable

from auditlog.context import set_actor
from django.http import HttpRequest, HttpResponse

from compliance.audit.actors import acting_as
from compliance.audit.staff import staff_actor


class StaffAuditlogActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            return self.get_response(request)  # tokens, not users: no session lookup
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff:
            return self.get_response(request)
        with set_actor(user), acting_as(staff_actor(request)):
            return self.get_response(request)

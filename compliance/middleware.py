"""The actor of changes made in the admin: the logged-in staff user, for django-auditlog
and for the audit events of staff rights changed through Django's own forms
(compliance.staffrights).

Used instead of auditlog's own middleware, which also records ``X-Forwarded-For`` and
``X-Forwarded-Port`` as sent (the audit trail already has the trusted client address)
and would add its work to every API call, where the actor is a token, not a user (the
audit event, joined by request id, names it)."""

from __future__ import annotations

from typing import Any

from auditlog.context import set_actor
from django.http import HttpRequest, HttpResponse

from compliance.audit.actors import acting_as
from compliance.audit.staff import staff_actor
from kernel.middleware import EitherMiddleware


class StaffAuditlogActorMiddleware(EitherMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if request.path.startswith("/api/"):
            return self.get_response(request)  # tokens, not users: no session lookup
        if self.is_async:
            return self._as_staff_async(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff:
            return self.get_response(request)
        with set_actor(user), acting_as(staff_actor(request)):
            return self.get_response(request)

    async def _as_staff_async(self, request: HttpRequest) -> HttpResponse:
        # Both are context variables: the admin's sync views, run in a thread by Django,
        # see them.
        user = await request.auser() if hasattr(request, "auser") else None
        if user is None or not user.is_authenticated or not user.is_staff:
            response: HttpResponse = await self.get_response(request)
            return response
        request.user = user
        with set_actor(user), acting_as(staff_actor(request)):
            response = await self.get_response(request)
        return response

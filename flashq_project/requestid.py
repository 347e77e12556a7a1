"""Gives every request a server-generated id. It goes into the audit record and back in
the response's ``X-Request-ID``, so no two events ever share an id by a client's choice.
A caller's own ``X-Request-ID``, when short and safe, is kept beside it
(``client_request_id`` in the audit record) for correlating with the caller's logs.

One that holds a payment card number is never kept: the middleware runs before anyone
is authenticated, so it only notes the number (at most BIN and last 4, in
``FLASHQ_REQUEST_ID_CARDS``) and the API refuses the call with a 422 once it knows who is
calling (queues.api.base), as it refuses a card number in a body. Other pages (the
admin, health checks) simply drop it. The response's ``X-Request-ID`` is always the
server's own, so the number is never echoed."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

from kernel.middleware import EitherMiddleware
from security.cards import card_numbers_in, mask

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_current: ContextVar[str | None] = ContextVar("flashq_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled (django-auditlog's correlation id, so its
    entries join the audit trail's ``request_id``), or None outside a request."""
    return _current.get()


class RequestIdMiddleware(EitherMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        request_id = uuid.uuid4().hex
        supplied = request.META.get("HTTP_X_REQUEST_ID", "")
        request.META["FLASHQ_REQUEST_ID"] = request_id
        kept = supplied if _SAFE.fullmatch(supplied) else ""
        cards = card_numbers_in(kept) if kept else []
        if cards:
            request.META["FLASHQ_REQUEST_ID_CARDS"] = [mask(digits) for digits in cards]
            kept = ""
        request.META["FLASHQ_CLIENT_REQUEST_ID"] = kept
        if self.is_async:
            return self._answer_async(request, request_id)
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response["X-Request-ID"] = request_id
        return response

    async def _answer_async(self, request: HttpRequest, request_id: str) -> HttpResponse:
        token = _current.set(request_id)
        try:
            response: HttpResponse = await self.get_response(request)
        finally:
            _current.reset(token)
        response["X-Request-ID"] = request_id
        return response

"""The base of every DRF API view. A view reads parse -> authorize -> service -> render:
services record the event of a call that succeeds, in the transaction of its change.
What is left here is wiring DRF's dispatch to the steps every call takes (calls.ApiCall):
who is calling, what they may do, and one event for a call that ends in a refusal or an
error."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from security.access import Principal

from .calls import ApiCall


class FlashqApiView(ApiCall, APIView):
    # No OPTIONS metadata: it would answer without an operation or an audit event.
    metadata_class = None

    def handle_exception(self, exc: Exception) -> Response:
        try:
            return super().handle_exception(self.refusal_for(exc))
        except Exception:
            self.record_refusal(500, {"code": "internal_error"})
            raise

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        self._started = time.perf_counter()
        return super().initialize_request(request, *args, **kwargs)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        """Every answer passes here; a refusal or an error gets its event now (a
        success already has one, written by its service)."""
        response = super().finalize_response(request, response, *args, **kwargs)
        seconds = time.perf_counter() - self._started
        self.finish(response, getattr(response, "data", None), seconds)
        return response

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.refuse_outside_addresses()
        # Who is calling comes first (DRF would negotiate the content type first), so a
        # refusal for a bad Accept header still names the caller.
        self.perform_authentication(request)
        self.caller = request.auth if isinstance(request.auth, Principal) else None
        super().initial(request, *args, **kwargs)
        self.admit()

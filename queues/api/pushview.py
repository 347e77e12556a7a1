"""``POST /queues/{queue}/jobs``, the single push, as a plain Django view: no DRF Request,
content negotiation or Response rendering on the hottest route (about 8% of a push).

It takes the steps every call takes (calls.ApiCall: address, token, network, last use,
rate, request id, length; the refusal's event, metrics and RateLimit headers), with the
same token authentication (security.authentication.bearer_principal), the route's own
parser (its size caps and JSON rules), the push itself (queue_views.push_one), DRF's
exception handler for every refusal and the route's renderer, so each answer is byte
for byte the DRF view's (tests/test_push_route.py holds the table).

Only an ordinary push comes here: a POST without a query string whose Accept header is
absent or names JSON plainly (``application/json``, ``application/*`` or ``*/*`` among
its entries, and no parameter anywhere), for which DRF's negotiation could only choose
plain JSON. Everything else on the URL (GET, which is getJobs; HEAD, OPTIONS and other
methods; ``?format=``; an Accept with parameters such as ``indent``, or without JSON)
goes to the DRF view, QueueJobsApi, which answers as it always did; the schema is
generated from it too."""

from __future__ import annotations

import io
import time
from functools import cache
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    UnsupportedMediaType,
)
from rest_framework.request import is_form_media_type
from rest_framework.utils.mediatypes import media_type_matches

from security.authentication import AUTHENTICATE_HEADER, bearer_principal

from .calls import ApiCall
from .operations import Operation
from .problems import problem_exception_handler
from .queue_views import QueueJobsApi, push_one

#: Accept entries for which DRF's negotiation picks the JSON renderer, unindented.
_PLAIN_JSON = frozenset({"application/json", "application/*", "*/*"})
_RENDERER = QueueJobsApi.renderer_classes[0]()
_drf_view = QueueJobsApi.as_view()


def _plain(request: HttpRequest) -> bool:
    if request.method != "POST" or request.META.get("QUERY_STRING"):
        return False
    accept = request.META.get("HTTP_ACCEPT")
    if accept is None:
        return True
    return ";" not in accept and any(entry.strip() in _PLAIN_JSON for entry in accept.split(","))


@csrf_exempt
def route(request: HttpRequest, queue: str) -> HttpResponseBase:
    """The URL's one entry: an ordinary push here, anything else to the DRF view."""
    if _plain(request):
        return PushCall(request, queue).answer()
    response: HttpResponseBase = _drf_view(request, queue=queue)
    return response


# What Django, DRF and drf-spectacular look for on a view function: the schema and the
# route's checks see QueueJobsApi.
for _name in ("view_class", "view_initkwargs", "cls", "initkwargs"):
    setattr(route, _name, getattr(_drf_view, _name))


@cache
def _route_headers() -> dict[str, str]:
    """The headers DRF adds to each of the route's answers (Allow)."""
    view = QueueJobsApi()
    view.setup(HttpRequest(), queue="")
    return dict(view.default_response_headers)


class PushCall(ApiCall):
    operations = {"post": Operation.PUSH}

    def __init__(self, request: HttpRequest, queue: str) -> None:
        self._started = time.perf_counter()
        self.request = request
        self.kwargs = {"queue": queue}

    def answer(self) -> HttpResponseBase:
        response: HttpResponseBase
        data = None
        try:
            self.refuse_outside_addresses()
            self.caller = bearer_principal(self.request)
            if self.caller is None:
                raise NotAuthenticated()
            self.admit()
            summary, status = push_one(self, self._body)
            response = HttpResponse(
                _RENDERER.render(summary), status=status, content_type=_RENDERER.media_type
            )
        except Exception as exc:
            response, data = self._refusal(exc)
        headers = _route_headers()
        for name, value in headers.items():
            if name == "Vary":
                patch_vary_headers(response, [value])
            else:
                response[name] = value
        self.finish(response, data, time.perf_counter() - self._started)
        return response

    def _body(self) -> Any:
        """The parsed body, as DRF's ``request.data`` would give it: none without a
        length, 415 for a media type the route has no parser for."""
        meta = self.request.META
        try:
            length = int(meta.get("CONTENT_LENGTH", meta.get("HTTP_CONTENT_LENGTH", 0)))
        except (ValueError, TypeError):
            length = 0
        media_type = meta.get("CONTENT_TYPE", meta.get("HTTP_CONTENT_TYPE", ""))
        if length == 0:
            if media_type and is_form_media_type(media_type):
                return QueryDict("", encoding=self.request.encoding)
            return {}
        for parser_class in QueueJobsApi.parser_classes:
            parser = parser_class()
            if media_type_matches(parser.media_type, media_type):
                stream: Any = self.request
                if getattr(self.request, "_read_started", False):
                    stream = io.BytesIO(self.request.body)
                context = {"view": self, "request": self.request}
                return parser.parse(stream, media_type, context)
        raise UnsupportedMediaType(media_type)

    def _refusal(self, exc: Exception) -> tuple[HttpResponseBase, Any]:
        """The problem+json answer, as the DRF view's handle_exception makes it."""
        exc = self.refusal_for(exc)
        if isinstance(exc, NotAuthenticated | AuthenticationFailed):
            exc.auth_header = AUTHENTICATE_HEADER  # type: ignore[union-attr]
        response = problem_exception_handler(exc, {"view": self, "request": self.request})
        if response is None:
            self.record_refusal(500, {"code": "internal_error"})
            raise exc
        response.accepted_renderer = _RENDERER
        response.accepted_media_type = _RENDERER.media_type
        response.renderer_context = {}  # type: ignore[attr-defined]
        return response, response.data

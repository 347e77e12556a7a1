"""Error pages: problem+json under /api/, Django's own pages elsewhere."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from .problems import CONTENT_TYPE, problem_body


def _problem(status: int, code: str, title: str, detail: str) -> HttpResponse:
    body = problem_body(status=status, code=code, title=title, detail=detail)
    return HttpResponse(json.dumps(body), status=status, content_type=CONTENT_TYPE)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return _problem(404, "not_found", "Not found", "No such API route.")


def server_error(request: HttpRequest) -> HttpResponse:
    """Says nothing about the failure itself: details go to the server log only."""
    if not request.path.startswith("/api/"):
        return defaults.server_error(request)
    return _problem(
        500,
        "internal_error",
        "Internal error",
        "The server could not complete the request; quote its X-Request-ID when reporting it.",
    )

"""404 for unknown URLs: problem+json under /api/, Django's page elsewhere."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views import defaults


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    body = {
        "type": "urn:flashq:problem:not_found",
        "title": "Not found",
        "status": 404,
        "detail": "No such API route.",
        "code": "not_found",
    }
    return HttpResponse(json.dumps(body), status=404, content_type="application/problem+json")

"""Error pages: problem+json under /api/, Django's own pages elsewhere."""

from __future__ import annotations

import json
from contextlib import suppress

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from compliance.audit import Action, ActorKind, audit_refusal
from compliance.audit.actors import request_actor
from compliance.audit.floods import record_throttled_refusal
from kernel.problems import CONTENT_TYPE, problem_body
from kernel.ratelimit import count_auth_failure
from security.authentication import AuthThrottled, TokenRefused, principal_for


def _problem(status: int, code: str, title: str, detail: str) -> HttpResponse:
    body = problem_body(status=status, code=code, title=title, detail=detail)
    return HttpResponse(json.dumps(body), status=status, content_type=CONTENT_TYPE)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _audit_unknown_route(request: HttpRequest) -> None:
    """One event, like every other API call: who (if the token holds), from where, with
    which method. Not the path: the client chose it. A caller without a valid token
    counts as a failed authentication, and once its address is throttled its refusals
    are summarised (compliance.audit.floods), so anonymous traffic cannot grow the trail
    without bound."""
    details: dict[str, str] = {"method": request.method if request.method in _METHODS else "other"}
    actor = request_actor(request, kind=ActorKind.ANONYMOUS)
    scheme, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not raw.strip():
            raise TokenRefused("missing")
        principal = principal_for(raw.strip()[:512], ip=actor.client_ip)
    except AuthThrottled:
        throttled = True
    except TokenRefused as refused:
        details["auth"] = refused.reason
        throttled = not count_auth_failure(actor.client_ip).allowed
    else:
        actor = request_actor(
            request, kind=ActorKind.TOKEN, name=principal.name, token_id=principal.token_id
        )
        throttled = False
    if throttled:
        record_throttled_refusal(
            actor=actor, action=Action.UNKNOWN_ROUTE, status=404, details=details
        )
    else:
        audit_refusal(actor=actor, action=Action.UNKNOWN_ROUTE, status=404, details=details)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    # If the database is down the answer stays a 404; its state is /readyz's business.
    with suppress(DatabaseError):
        _audit_unknown_route(request)
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

"""The actor of an HTTP request: who (given by the caller of this function), plus where
from and which request, read the same way for the API, the admin and error pages."""

from __future__ import annotations

from django.http import HttpRequest

from security.clientip import client_ip

from .audit import Actor, ActorKind


def request_actor(
    request: HttpRequest,
    *,
    kind: ActorKind,
    name: str = "",
    token_id: int | None = None,
    user_id: int | None = None,
) -> Actor:
    return Actor(
        kind=kind,
        name=name,
        token_id=token_id,
        user_id=user_id,
        client_ip=client_ip(request),
        request_id=request.META.get("FLASHQ_REQUEST_ID", ""),
        client_request_id=request.META.get("FLASHQ_CLIENT_REQUEST_ID", ""),
    )

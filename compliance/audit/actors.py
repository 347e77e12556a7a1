"""Who acts. ``request_actor``: the actor of an HTTP request, who (given by the caller),
plus where from and which request, read the same way for the API, the admin and error
pages. ``acting_as``: the actor that signal receivers (staff rights, compliance.staffrights)
record for changes made inside; ``current_actor`` reads it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest

from kernel.clientip import client_ip

from .record import Actor, ActorKind

_acting: ContextVar[Actor | None] = ContextVar("flashq_staff_rights_actor", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Changes of staff rights made inside are recorded with ``actor``."""
    reset = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(reset)


def current_actor() -> Actor:
    actor = _acting.get()
    if actor is not None:
        return actor
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in ("manage.py", "django-admin") and len(sys.argv) > 1:
        return Actor.command(sys.argv[1])
    return Actor.system("unattributed")


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

"""The admin's live view: a staff session's event stream (``admin/events/stream``) of
every queue the user may view (queues.staffaccess), which the dashboard and the job
list listen to (queues/static/queues/live.js). The same stream as the API's
(queues.events.stream): opened with one audit event, counted toward the waiter caps,
and at every heartbeat the session and the user's rights read again, ending it once
the session no longer logs the user in (logged out, expired, password changed, no
longer active staff) or the rights are gone. The engine's internal queues (webhook
deliveries) are never sent, whatever the rights."""

from __future__ import annotations

from functools import partial
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

from compliance.audit.staff import staff_actor
from kernel.limits import INTERNAL_QUEUE_PREFIX

from ..events.response import stream_response, stream_slot
from ..events.stream import Reaches
from ..events.subscribe import queue_names
from ..reads import events_stream_read
from ..staffaccess import may_on_some, queues_for

VIEW = "view_queue"


def _public(name: str) -> bool:
    return not name.startswith(INTERNAL_QUEUE_PREFIX)


def staff_reaches(user_id: int) -> Reaches | None:
    """The queues the user may view now; None once they may view none (or are no longer
    active staff). A right held globally reaches queues made later too; no right
    reaches an internal queue."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not (user.is_active and user.is_staff) or not may_on_some(user, VIEW):
        return None
    if user.has_perm(f"queues.{VIEW}"):
        return _public
    names = set(queues_for(user, VIEW).values_list("name", flat=True))
    return lambda name: name in names and _public(name)


def session_user(session_key: str | None) -> Any:
    """The user the session logs in now, as Django's auth reads it at each request
    (None once logged out, expired, or its password changed)."""
    if session_key is None:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return user if user.is_authenticated else None


def staff_recheck(user_id: int, session_key: str | None) -> Reaches | None:
    """At a heartbeat: the stream's queues, while its session still logs the user in."""
    user = session_user(session_key)
    if user is None or user.pk != user_id:
        return None
    return staff_reaches(user_id)


def events_stream(request: HttpRequest) -> HttpResponseBase:
    user: Any = request.user
    reaches = staff_reaches(user.pk)
    if reaches is None:
        raise PermissionDenied
    release = stream_slot(f"staff:{user.pk}")
    try:
        start = events_stream_read(
            pattern="*",
            reaches=reaches,
            names=queue_names(),
            last_event_id=request.META.get("HTTP_LAST_EVENT_ID"),
            actor=staff_actor(request),
        )
    except BaseException:
        release()
        raise
    recheck = partial(staff_recheck, user.pk, request.session.session_key)
    return stream_response(request, reaches=reaches, start=start, recheck=recheck, release=release)

"""The admin's live view: a staff session's event stream (``admin/events/stream``) of
every queue the user may view (queues.staffaccess), which the dashboard and the job
list listen to (queues/static/queues/live.js). The same stream as the API's
(queues.events.stream): opened with one audit event, counted toward the waiter caps,
and the user's rights read again at every heartbeat, ending it once they are gone."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

from compliance.audit.staff import staff_actor

from ..events.response import stream_response, stream_slot
from ..events.stream import Reaches
from ..events.subscribe import queue_names
from ..reads import events_stream_read
from ..staffaccess import may_on_some, queues_for

VIEW = "view_queue"


def staff_reaches(user_id: int) -> Reaches | None:
    """The queues the user may view now; None once they may view none (or are no longer
    active staff). A right held globally reaches queues made later too."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not may_on_some(user, VIEW):
        return None
    if user.has_perm(f"queues.{VIEW}"):
        return lambda name: True
    return set(queues_for(user, VIEW).values_list("name", flat=True)).__contains__


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
    recheck = partial(staff_reaches, user.pk)
    return stream_response(request, reaches=reaches, start=start, recheck=recheck, release=release)

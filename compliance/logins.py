"""Admin logins in the audit trail: each success, failure and lockout (django-axes) is
one event with the client's address. A failure names the account only when one by that
name exists, so what a client types into the username box stays out of the trail
(django-axes keeps its own record of attempts, usernames included, in
``axes_accessattempt``)."""

from __future__ import annotations

import time
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from compliance.audit import Action, ActorKind, audit_record
from compliance.audit.actors import request_actor
from kernel.clientip import client_ip
from kernel.ratelimit import count_throttled

ADMIN_LOCKED = "admin-locked:"


def _known(username: object) -> str:
    if not isinstance(username, str) or not username:
        return ""
    exists = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username})
    return username if exists.exists() else ""


def _record(
    request: HttpRequest | None,
    action: Action,
    status: int,
    username: str,
    details: dict[str, str] | None = None,
) -> None:
    if request is None:  # not an HTTP login (a test or a script authenticating)
        return
    kind = ActorKind.USER if username else ActorKind.ANONYMOUS
    with transaction.atomic():
        audit_record(
            actor=request_actor(request, kind=kind, name=username),
            action=action,
            status=status,
            details=details,
        )


@receiver(user_logged_in)
def record_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(request, Action.ADMIN_LOGIN, 200, user.get_username())


@receiver(user_login_failed)
def record_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is not None and getattr(request, "axes_locked_out", False):
        return  # a locked-out attempt: record_lockout summarises those
    _record(request, Action.ADMIN_LOGIN_FAILED, 401, _known(credentials.get("username")))


@receiver(user_locked_out)
def record_lockout(
    sender: Any, request: HttpRequest | None = None, username: Any = None, **kwargs: Any
) -> None:
    """Sent for every attempt while locked out: so that a flood cannot grow the trail
    without bound, only the 1st, 2nd, 4th, 8th, ... of a cool-off window is recorded,
    with the count so far."""
    if request is None:
        return
    window = settings.AXES_COOLOFF_TIME.total_seconds()
    count = count_throttled(
        ip=client_ip(request), window_s=window, now_s=time.time(), kind=ADMIN_LOCKED
    )
    if count & (count - 1) == 0:
        _record(request, Action.ADMIN_LOCKOUT, 429, _known(username), {"attempts": str(count)})

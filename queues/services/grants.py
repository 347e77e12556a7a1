"""Staff rights on queues (``grant_queue``): on one queue as django-guardian object
permissions, or on every queue a pattern matches (``mail*``, matched as a token rule's
pattern is, so a queue created later is covered) as security.StaffQueueGrant rows."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from compliance.audit.actors import acting_as
from kernel.problems import (
    InvalidInput,
)
from security.access import WILDCARD, InvalidRule, validate_pattern
from security.models import StaffQueueGrant

from ..staffaccess import forget
from .queue_settings import queue_for_update

QUEUE_ROLES = {
    "viewer": ("view_queue",),
    "operator": ("view_queue", "change_queue", "operate_queue"),
    "revealer": ("reveal_queue",),
}


def _grant_pattern(*, pattern: str, codenames: list[str], grantee: Any, revoke: bool) -> None:
    try:
        validate_pattern(pattern)
    except InvalidRule as exc:
        raise InvalidInput(str(exc)) from None
    whom = {"group" if grantee.__class__.__name__ == "Group" else "user": grantee}
    for codename in codenames:
        if revoke:
            StaffQueueGrant.objects.filter(pattern=pattern, permission=codename, **whom).delete()
        else:
            StaffQueueGrant.objects.get_or_create(pattern=pattern, permission=codename, **whom)


def queue_grant(
    *, queue_name: str, role: str, grantee: Any, revoke: bool = False, actor: Actor
) -> list[str]:
    """Give (or take back) a staff user or group a role on one queue (django-guardian
    object permissions), or on every queue, present or future, that ``queue_name``
    matches when it holds a ``*``; recorded with who and what. Returns the permissions
    changed."""
    from guardian.shortcuts import assign_perm, remove_perm

    if role not in QUEUE_ROLES:
        raise InvalidInput(f"The role is one of {', '.join(QUEUE_ROLES)}.")
    is_pattern = WILDCARD in queue_name
    with transaction.atomic():
        codenames = list(QUEUE_ROLES[role])
        if is_pattern:
            _grant_pattern(pattern=queue_name, codenames=codenames, grantee=grantee, revoke=revoke)
        else:
            queue = queue_for_update(queue_name)
            # guardian's rows are recorded as they change (compliance.staffrights): by
            # this grant's actor, not an unattributed one.
            with acting_as(actor):
                for codename in codenames:
                    (remove_perm if revoke else assign_perm)(f"queues.{codename}", grantee, queue)
        kind = "group" if grantee.__class__.__name__ == "Group" else "user"
        label = grantee.name if kind == "group" else grantee.get_username()
        details: dict[str, Any] = {"role": role, "permissions": codenames, kind: label}
        if is_pattern:
            details["pattern"] = queue_name
        if kind == "user":
            forget(grantee)  # a caller holding this user object sees the change
        audit_record(
            actor=actor,
            action=Action.QUEUE_REVOKE if revoke else Action.QUEUE_GRANT,
            queue=queue_name,
            details=details,
        )
    return codenames

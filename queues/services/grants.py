"""Staff rights on one queue (``grant_queue``; guardian object permissions)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from kernel.problems import (
    InvalidInput,
)

from .queue_settings import queue_for_update

QUEUE_ROLES = {
    "viewer": ("view_queue",),
    "operator": ("view_queue", "change_queue", "operate_queue"),
    "revealer": ("reveal_queue",),
}


def queue_grant(
    *, queue_name: str, role: str, grantee: Any, revoke: bool = False, actor: Actor
) -> list[str]:
    """Give (or take back) a staff user or group a role on one queue (django-guardian
    object permissions); recorded with who and what. Returns the permissions changed."""
    from guardian.shortcuts import assign_perm, remove_perm

    if role not in QUEUE_ROLES:
        raise InvalidInput(f"The role is one of {', '.join(QUEUE_ROLES)}.")
    with transaction.atomic():
        queue = queue_for_update(queue_name)
        codenames = list(QUEUE_ROLES[role])
        for codename in codenames:
            (remove_perm if revoke else assign_perm)(f"queues.{codename}", grantee, queue)
        kind = "group" if grantee.__class__.__name__ == "Group" else "user"
        label = grantee.name if kind == "group" else grantee.get_username()
        audit_record(
            actor=actor,
            action=Action.QUEUE_REVOKE if revoke else Action.QUEUE_GRANT,
            queue=queue_name,
            details={"role": role, "permissions": codenames, kind: label},
        )
    return codenames

"""The admin's two groups, ``Operators`` and ``Auditors``, and the service that puts
them in place (``manage.py setup_roles``).

- ``Operators`` run the queues granted to them (``manage.py grant_queue Q --group
  Operators --role operator``, or a queue's "Object permissions" page): see and change
  those queues and retry, cancel and delete their jobs. Globally they only view the
  retention policies.
- ``Auditors`` only look: jobs (sensitive fields masked), queues, the audit trail and
  its checkpoints, erasure receipts, retention policies, and the access review (every
  token's rules and every staff user's rights). An object's history is its audit
  events (its "History" page); django-auditlog's table is among the admin's internals,
  for superusers only (flashq_project.adminindex). They get no add,
  change or delete permission, so the admin shows them no action, button or add link,
  and refuses any POST from them (flashq_project.adminsite)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from compliance.audit.actors import acting_as

ROLES: dict[str, list[str]] = {
    "Operators": ["compliance.view_retentionpolicy"],
    "Auditors": [
        "queues.view_queue",
        "queues.view_job",
        "compliance.view_auditevent",
        "compliance.view_auditcheckpoint",
        "compliance.view_erasurerequest",
        "compliance.view_retentionpolicy",
        "security.review_access",
    ],
}


@dataclass(frozen=True)
class RoleChange:
    group: str
    created: bool
    added: list[str]
    removed: list[str]


def _dotted(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def _permission(dotted: str) -> Permission:
    app, codename = dotted.split(".")
    return Permission.objects.select_related("content_type").get(
        content_type__app_label=app, codename=codename
    )


def roles_setup(*, actor: Actor) -> list[RoleChange]:
    """Create or update the groups so each holds exactly its permissions (extra ones
    are removed); one ``roles.setup`` event says what changed, and each change of a
    group's permissions is recorded by compliance.staffrights as well."""
    changes = []
    with transaction.atomic(), acting_as(actor):
        for name, dotted in ROLES.items():
            group, created = Group.objects.get_or_create(name=name)
            before = {_dotted(p) for p in group.permissions.select_related("content_type")}
            group.permissions.set([_permission(code) for code in dotted])
            changes.append(
                RoleChange(
                    group=name,
                    created=created,
                    added=sorted(set(dotted) - before),
                    removed=sorted(before - set(dotted)),
                )
            )
        audit_record(
            actor=actor,
            action=Action.ROLES_SETUP,
            details={
                "groups": {
                    change.group: {
                        "created": change.created,
                        "added": change.added,
                        "removed": change.removed,
                    }
                    for change in changes
                }
            },
        )
    return changes

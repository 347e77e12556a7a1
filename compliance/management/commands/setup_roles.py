"""``manage.py setup_roles``: create or update (idempotently) the admin's two groups.

- ``Operators`` run the queues granted to them (``manage.py grant_queue Q --group
  Operators --role operator``, or a queue's "Object permissions" page): see and change
  those queues and retry, cancel and delete their jobs. Globally they only view the
  retention policies.
- ``Auditors`` only look: jobs (sensitive fields masked), queues, the audit trail and
  its checkpoints, erasure receipts, retention policies and configuration history. They
  get no add, change or delete permission, so the admin shows them no action, button or
  add link, and refuses any POST from them (flashq_project.adminsite).

A group's permissions are set to exactly these on every run (extra ones are removed)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

ROLES: dict[str, list[str]] = {
    "Operators": ["compliance.view_retentionpolicy"],
    "Auditors": [
        "queues.view_queue",
        "queues.view_job",
        "compliance.view_auditevent",
        "compliance.view_auditcheckpoint",
        "compliance.view_erasurerequest",
        "compliance.view_retentionpolicy",
        "auditlog.view_logentry",
    ],
}


def _permission(dotted: str) -> Permission:
    app, codename = dotted.split(".")
    return Permission.objects.get(content_type__app_label=app, codename=codename)


class Command(BaseCommand):
    help = "Create or update the Operators and Auditors groups (idempotent)."

    def handle(self, *args: Any, **options: Any) -> str:
        for name, dotted in ROLES.items():
            group, created = Group.objects.get_or_create(name=name)
            group.permissions.set([_permission(code) for code in dotted])
            self.stdout.write(f"{'created' if created else 'updated'}: {name} ({len(dotted)})")
        return "Roles in place."

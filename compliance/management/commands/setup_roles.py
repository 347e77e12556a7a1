"""``manage.py setup_roles``: create or update (idempotently) the admin's two groups,
``Operators`` and ``Auditors`` (compliance.roles says what each may do). A group's
permissions are set to exactly these on every run (extra ones are removed); the run is
an audit event (``roles.setup``) naming what changed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.audit import Actor
from compliance.roles import ROLES, roles_setup


class Command(BaseCommand):
    help = "Create or update the Operators and Auditors groups (idempotent, audited)."

    def handle(self, *args: Any, **options: Any) -> str:
        for change in roles_setup(actor=Actor.command("setup_roles")):
            verb = "created" if change.created else "updated"
            self.stdout.write(f"{verb}: {change.group} ({len(ROLES[change.group])})")
        return "Roles in place."

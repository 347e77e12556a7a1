"""``manage.py grant_queue QUEUE (--user NAME | --group NAME) --role
viewer|operator|revealer [--revoke]``: per-queue rights for staff in the admin
(django-guardian). QUEUE may be a pattern as in a token rule (``'mail*'``: anchored,
``*`` any run of characters): the grant then covers every queue it matches, those
created later included. ``operator`` sees the queue and its jobs, changes its settings,
pauses it and retries, cancels and deletes its jobs; ``viewer`` only sees; ``revealer``
sees its jobs' sensitive fields unmasked. Audited (``queue.grant`` / ``queue.revoke``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit import Actor
from kernel.problems import FlashqError
from queues.services import QUEUE_ROLES, queue_grant


class Command(BaseCommand):
    help = (
        "Grant (or --revoke) a staff user or group a role on one queue, or on every "
        "queue a pattern matches ('mail*': created later too)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="a queue name, or a pattern such as 'mail*'")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user")
        who.add_argument("--group")
        parser.add_argument("--role", choices=sorted(QUEUE_ROLES), required=True)
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            if options["user"]:
                grantee: Any = get_user_model().objects.get_by_natural_key(options["user"])
            else:
                grantee = Group.objects.get(name=options["group"])
        except (Group.DoesNotExist, get_user_model().DoesNotExist):
            raise CommandError("No such user or group.") from None
        try:
            changed = queue_grant(
                queue_name=options["queue"],
                role=options["role"],
                grantee=grantee,
                revoke=options["revoke"],
                actor=Actor.command("grant_queue"),
            )
        except FlashqError as exc:
            raise CommandError(exc.detail) from None
        verb = "Revoked" if options["revoke"] else "Granted"
        return f"{verb} {', '.join(changed)} on {options['queue']}."

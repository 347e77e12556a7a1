"""``manage.py revoke_token NAME [--reason TEXT] [--only-this]``: the token and every token
of its family (rotated from or into it) stop working on every app server within
PRINCIPAL_CACHE_SECONDS (1 s by default: each app server remembers a token it let in
for that long). The reason goes into each token's audit event."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from security.models import ApiToken
from security.services import token_revoke


class Command(BaseCommand):
    help = (
        "Revoke an API token by name, with its whole family (rotated twins) unless "
        "--only-this. Its requests get 401 on every app server within "
        "PRINCIPAL_CACHE_SECONDS (1 s by default)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--reason", default="", help="why (kept in the audit trail), e.g. a ticket"
        )
        parser.add_argument(
            "--only-this",
            action="store_true",
            help="leave the other tokens of its family (rotated twins) working",
        )

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            tokens = token_revoke(
                name=options["name"],
                family=not options["only_this"],
                reason=options["reason"].strip(),
                actor=Actor.command("revoke_token"),
            )
        except ApiToken.DoesNotExist as exc:
            raise CommandError(f"No token named {options['name']!r}") from exc
        return f"Revoked {options['name']!r}" + (
            "." if len(tokens) == 1 else f" and its family: {len(tokens)} token(s)."
        )

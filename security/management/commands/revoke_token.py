"""``manage.py revoke_token NAME [--family]``: the token (or every token of its family)
stops working on every app server within PRINCIPAL_CACHE_SECONDS (1 s by default: each
app server remembers a token it let in for that long)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from security.models import ApiToken
from security.services import token_revoke, token_revoke_family


class Command(BaseCommand):
    help = (
        "Revoke an API token by name. Its requests get 401 on every app server within "
        "PRINCIPAL_CACHE_SECONDS (1 s by default)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--family", action="store_true", help="revoke every token rotated from the same one"
        )

    def handle(self, *args: Any, **options: Any) -> str:
        actor = Actor.command("revoke_token")
        try:
            if options["family"]:
                family = token_revoke_family(name=options["name"], actor=actor)
                return f"Revoked the family of {options['name']!r}: {len(family)} token(s)."
            token = token_revoke(name=options["name"], actor=actor)
        except ApiToken.DoesNotExist as exc:
            raise CommandError(f"No token named {options['name']!r}") from exc
        return f"Revoked token {token.name!r} (id {token.pk})."

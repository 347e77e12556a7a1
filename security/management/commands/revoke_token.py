"""``manage.py revoke_token NAME``: the token stops working at once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from security.models import ApiToken
from security.services import token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by name. Its requests get 401 from then on."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            token = token_revoke(name=options["name"], actor=Actor.command("revoke_token"))
        except ApiToken.DoesNotExist as exc:
            raise CommandError(f"No token named {options['name']!r}") from exc
        return f"Revoked token {token.name!r} (id {token.pk})."

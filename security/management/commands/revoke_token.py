"""``manage.py revoke_token NAME``: the token stops working at once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from compliance.audit import Actor, audit_record
from security.models import ApiToken
from security.services import token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by name. Its requests get 401 from then on."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            with transaction.atomic():
                token = token_revoke(name=options["name"])
                audit_record(
                    actor=Actor(name="command:revoke_token"),
                    action="token.revoke",
                    status=200,
                    details={"token_id": token.pk, "token_name": token.name},
                )
        except ApiToken.DoesNotExist as exc:
            raise CommandError(f"No token named {options['name']!r}") from exc
        return f"Revoked token {token.name!r} (id {token.pk})."

"""``manage.py rotate_token NAME --overlap HOURS``: a new token in the same family, with
the same rules and addresses; the old one keeps working for HOURS, then is refused.
Prints the new token alone on the last line (shown this once)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from security.models import ApiToken
from security.services import token_rotate


class Command(BaseCommand):
    help = (
        "Rotate an API token: issue a new one (same name, family, rules and addresses) and "
        "cut the old one's expiry to --overlap hours from now; the old one is renamed "
        "NAME~<public id>."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--overlap", type=float, required=True, metavar="HOURS")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            token, raw = token_rotate(
                name=options["name"],
                overlap_hours=options["overlap"],
                actor=Actor.command("rotate_token"),
            )
        except ApiToken.DoesNotExist as exc:
            raise CommandError(f"No token named {options['name']!r}") from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(
            f"Rotated {token.name!r}: new token id {token.pk}, family {token.family}; the old "
            f"one works for {options['overlap']:g} more hour(s). The new token is shown only once:"
        )
        return raw

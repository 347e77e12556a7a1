"""``manage.py create_token NAME --allow 'PATTERN=verb,verb' [--deny ...] [--expires-in DAYS]``

Prints the new token alone on the last line. It is shown this once and stored only as
an HMAC; keep it in a secrets manager."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from security.access import NAMED_ONLY, VERBS, WILDCARD, InvalidRule
from security.services import RuleSpec, parse_rule, token_create


class Command(BaseCommand):
    help = "Create an API token with per-queue permissions; prints the token once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        named = ", ".join(verb for verb in VERBS if verb in NAMED_ONLY)
        parser.add_argument(
            "--allow",
            action="append",
            default=[],
            metavar="PATTERN=VERBS",
            help=f"repeatable; verbs: {WILDCARD} or any of {', '.join(VERBS)}; "
            f"{WILDCARD} grants all but {named}, which must be named",
        )
        parser.add_argument(
            "--deny",
            action="append",
            default=[],
            metavar="PATTERN=VERBS",
            help=f"repeatable; beats any allow; {WILDCARD} denies every verb",
        )
        parser.add_argument(
            "--cidr",
            action="append",
            default=[],
            metavar="CIDR",
            help="an address range the token may be used from (repeatable); none: any",
        )
        parser.add_argument(
            "--rate", metavar="N/PERIOD", help="requests per period, e.g. 100/60s or 5000/1h"
        )
        parser.add_argument(
            "--expires-in",
            type=int,
            metavar="DAYS",
            help=f"default {settings.TOKEN_DEFAULT_LIFETIME_DAYS}, "
            f"at most TOKEN_MAX_LIFETIME_DAYS ({settings.TOKEN_MAX_LIFETIME_DAYS})",
        )

    def handle(self, *args: Any, **options: Any) -> str:
        days = options["expires_in"]
        if days is not None and not 1 <= days <= settings.TOKEN_MAX_LIFETIME_DAYS:
            raise CommandError(
                f"--expires-in must be 1 to {settings.TOKEN_MAX_LIFETIME_DAYS} days "
                "(TOKEN_MAX_LIFETIME_DAYS)"
            )
        try:
            rules: list[RuleSpec] = [parse_rule(text, allow=True) for text in options["allow"]]
            rules += [parse_rule(text, allow=False) for text in options["deny"]]
        except InvalidRule as exc:
            raise CommandError(str(exc)) from exc
        if not any(rule.allow for rule in rules):
            self.stderr.write("warning: no --allow rule; this token can do nothing")
        try:
            token, raw = token_create(
                name=options["name"],
                rules=rules,
                expires_in_days=options["expires_in"],
                allowed_cidrs=options["cidr"],
                rate_limit=options["rate"],
                actor=Actor.command("create_token"),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"Created token {token.name!r} (id {token.pk}). It is shown only once:")
        return raw

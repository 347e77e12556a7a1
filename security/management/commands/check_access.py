"""``manage.py check_access TOKEN_NAME VERB QUEUE``: would this token be allowed? Prints
allowed or denied and the rule that decided, evaluated by the same code as the API."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from kernel.limits import QUEUE_NAME_RE, QUEUE_NAME_RULE
from security.access import NAMED_ONLY, Verb
from security.selectors import token_principal


class Command(BaseCommand):
    help = (
        "Say whether a token may use VERB on QUEUE, and which rule decided (or that no "
        "rule allows it: default deny). Changes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("token_name")
        named = ", ".join(verb for verb in Verb if verb in NAMED_ONLY)
        parser.add_argument(
            "verb", help=f"one of {', '.join(Verb)} ({named}: granted only by name, never by *)"
        )
        parser.add_argument("queue")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            verb = Verb(options["verb"])
        except ValueError as exc:
            raise CommandError(
                f"unknown verb {options['verb']!r}: use one of {', '.join(Verb)}"
            ) from exc
        if not QUEUE_NAME_RE.fullmatch(options["queue"]):
            raise CommandError(f"invalid queue name: {QUEUE_NAME_RULE}")
        found = token_principal(name=options["token_name"])
        if found is None:
            raise CommandError(f"No token named {options['token_name']!r}")
        principal, token = found
        decision = principal.decide(verb, options["queue"])
        verdict = "allowed" if decision.allowed else "denied"
        lines = [f"{verdict}: {decision.reason}"]
        if token.revoked:
            lines.append(f"but the token is revoked (since {token.revoked_at:%Y-%m-%d %H:%M} UTC)")
        elif token.expires_at is not None and token.expires_at <= timezone.now():
            lines.append(f"but the token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC")
        return "\n".join(lines)

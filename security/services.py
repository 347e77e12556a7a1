"""Token lifecycle: create (secret shown once) and revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import tokens
from .access import Rule
from .models import ApiToken, QueuePermission


@dataclass(frozen=True)
class RuleSpec:
    pattern: str
    verbs: tuple[str, ...]
    allow: bool


def parse_rule(text: str, *, allow: bool) -> RuleSpec:
    """``PATTERN=verb,verb`` -> RuleSpec. Raises access.InvalidRule on bad input."""
    pattern, sep, verbs = text.rpartition("=")
    if not sep:
        pattern, verbs = text, ""
    verb_tuple = tuple(verb.strip() for verb in verbs.split(",") if verb.strip())
    Rule.build(pattern, verb_tuple, allow=allow)  # validates, raises InvalidRule
    return RuleSpec(pattern, verb_tuple, allow)


@transaction.atomic
def token_create(
    *, name: str, rules: list[RuleSpec], expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token with its permission rows. Returns the token and its one-time
    plaintext; the plaintext is not kept anywhere."""
    raw, parts = tokens.generate()
    expires_at = None
    if expires_in_days is not None:
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    token = ApiToken(
        name=name,
        public_id=parts.public_id,
        secret_hash=tokens.hash_secret(parts.secret, settings.TOKEN_PEPPER),
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    QueuePermission.objects.bulk_create(
        QueuePermission(
            token=token,
            pattern=rule.pattern,
            verbs=",".join(rule.verbs),
            effect=QueuePermission.Effect.ALLOW if rule.allow else QueuePermission.Effect.DENY,
        )
        for rule in rules
    )
    return token, raw


def token_revoke(*, name: str) -> ApiToken:
    """Revoke a token by name; raises ApiToken.DoesNotExist. Revoking twice is a no-op."""
    token = ApiToken.objects.get(name=name)
    if not token.revoked:
        token.revoked = True
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked", "revoked_at"])
    return token

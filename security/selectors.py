"""Reads of tokens and their rules, as the access code sees them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from .access import Principal, Rule, split_verbs
from .models import ApiToken, QueuePermission


def token_principal(*, name: str) -> tuple[Principal, ApiToken] | None:
    """The principal a stored token stands for (whatever its expiry or revocation), and
    the token; None if there is no such token."""
    token = ApiToken.objects.filter(name=name).prefetch_related("permissions").first()
    if token is None:
        return None
    rules = tuple(
        Rule.build(
            permission.pattern,
            split_verbs(permission.verbs),
            allow=permission.effect == QueuePermission.Effect.ALLOW,
        )
        for permission in token.permissions.all()
    )
    return Principal(name=token.name, rules=rules, token_id=token.pk), token


class TokenState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


def token_state(token: ApiToken, *, now: datetime) -> TokenState:
    """What a token is, in words, as authentication decides it: revocation wins over
    expiry (it is final); expiry is the earlier of its own and the maximum lifetime."""
    if token.revoked:
        return TokenState.REVOKED
    expires = token.latest_expiry
    if token.expires_at is not None:
        expires = min(expires, token.expires_at)
    return TokenState.EXPIRED if now >= expires else TokenState.ACTIVE

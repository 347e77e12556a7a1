"""Reads of tokens and their rules, as the access code sees them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.db.models import Q

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


def owner_live(key: str, *, now: datetime) -> bool:
    """Whether the principal whose ``Principal.key`` is ``key`` still has a token that
    authentication would let in: a family (``family:<id>``) any unrevoked, unexpired
    member; a lone token (``token:<pk>``) that token; a bootstrap token
    (``bootstrap:bootstrap-<n>``) an n-th entry still in AUTH_TOKENS. Anything else (no
    token stands for it) is not live."""
    kind, _, ident = key.partition(":")
    if kind == "bootstrap":
        number = ident.removeprefix("bootstrap-")
        return number.isdigit() and 1 <= int(number) <= len(settings.AUTH_TOKENS)
    if kind == "family" and ident:
        tokens = ApiToken.objects.filter(family=ident, revoked_at__isnull=True)
    elif kind == "token" and ident.isdigit():
        tokens = ApiToken.objects.filter(pk=int(ident), revoked_at__isnull=True)
    else:
        return False
    return any(token_state(token, now=now) is TokenState.ACTIVE for token in tokens)


def holder_names(keys: Iterable[str]) -> dict[str, str]:
    """The name people know each holder by, for ``Principal.key`` values (who holds a
    lease): a family (``family:<id>``) by its newest token's name (a rotation renames the
    old token ``NAME~<public id>`` and gives the new one NAME), a lone token
    (``token:<pk>``) by its name, a bootstrap token (``bootstrap:bootstrap-<n>``) by
    ``bootstrap-<n>``. A key no token stands for any more keeps the key itself. One
    query, whatever the number of keys."""
    wanted = set(keys)
    names = {key: key for key in wanted}
    families, token_ids = set(), set()
    for key in wanted:
        kind, _, ident = key.partition(":")
        if kind == "bootstrap" and ident:
            names[key] = ident
        elif kind == "family" and ident:
            families.add(ident)
        elif kind == "token" and ident.isdigit():
            token_ids.add(int(ident))
    if families or token_ids:
        rows = (
            ApiToken.objects.filter(Q(family__in=families) | Q(pk__in=token_ids))
            .order_by("created_at", "pk")
            .values_list("pk", "family", "name")
        )
        for pk, family, name in rows:  # oldest first: a family's newest name wins
            if family in families:
                names[f"family:{family}"] = name
            if pk in token_ids:
                names[f"token:{pk}"] = name
    return names

"""Token lifecycle: create (secret shown once), update, revoke, delete. Each takes the
``actor`` who asked and records its audit event in the same transaction as the change;
the command line and the admin call these, never the models directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel.clientip import normalise_cidr

from . import tokens
from .access import Rule, split_verbs
from .models import ApiToken, QueuePermission
from .selectors import TokenState, token_state


@dataclass(frozen=True)
class RuleSpec:
    pattern: str
    verbs: tuple[str, ...]
    allow: bool

    def __str__(self) -> str:
        return f"{'allow' if self.allow else 'deny'} {self.pattern}={','.join(self.verbs)}"


def parse_rule(text: str, *, allow: bool) -> RuleSpec:
    """``PATTERN=verb,verb`` -> RuleSpec. Raises access.InvalidRule on bad input."""
    pattern, sep, verbs = text.rpartition("=")
    if not sep:
        pattern, verbs = text, ""
    verb_tuple = split_verbs(verbs)
    Rule.build(pattern, verb_tuple, allow=allow)  # validates, raises InvalidRule
    return RuleSpec(pattern, verb_tuple, allow)


def _rule_of(permission: QueuePermission) -> RuleSpec:
    return RuleSpec(
        permission.pattern,
        split_verbs(permission.verbs),
        permission.effect == QueuePermission.Effect.ALLOW,
    )


def _set_rules(token: ApiToken, rules: Sequence[RuleSpec]) -> None:
    """Make a token's rules exactly ``rules``: unchanged rows stay, the rest are
    deleted or created, each new one validated as the model validates it."""
    wanted = list(dict.fromkeys(rules))
    existing = {_rule_of(permission): permission for permission in token.permissions.all()}
    stale = [permission.pk for rule, permission in existing.items() if rule not in wanted]
    if stale:
        QueuePermission.objects.filter(pk__in=stale).delete()
    rows = [
        QueuePermission(
            token=token,
            pattern=rule.pattern,
            verbs=",".join(rule.verbs),
            effect=QueuePermission.Effect.ALLOW if rule.allow else QueuePermission.Effect.DENY,
        )
        for rule in wanted
        if rule not in existing
    ]
    for row in rows:
        row.full_clean()
    for row in rows:
        row.save()  # one by one (a token has few rules): django-auditlog records each


def _cidrs(cidrs: Sequence[str] | None) -> list[str] | None:
    """Canonical CIDRs, or None for "any address"; a bad one is left for full_clean()
    to name."""
    if not cidrs:
        return None
    try:
        return [normalise_cidr(cidr) for cidr in cidrs]
    except ValueError:
        return list(cidrs)


def _described(token: ApiToken, **more: object) -> dict[str, object]:
    return {"token_id": token.pk, "token_name": token.name, **more}


def token_create(
    *,
    name: str,
    rules: Sequence[RuleSpec],
    expires_in_days: int | None = None,
    allowed_cidrs: Sequence[str] = (),
    rate_limit: str | None = None,
    actor: Actor,
) -> tuple[ApiToken, str]:
    """Create a token, in a family of its own, with its permission rows. It expires
    after ``expires_in_days`` (default TOKEN_DEFAULT_LIFETIME_DAYS, at most
    TOKEN_MAX_LIFETIME_DAYS). Returns the token and its one-time plaintext; the
    plaintext is not kept anywhere, and never audited."""
    with transaction.atomic():
        days = settings.TOKEN_DEFAULT_LIFETIME_DAYS if expires_in_days is None else expires_in_days
        token, raw = _create(
            name=name,
            rules=rules,
            lifetime=timedelta(days=days),
            allowed_cidrs=allowed_cidrs,
            rate_limit=rate_limit,
        )
        audit_record(
            actor=actor,
            action=Action.TOKEN_CREATE,
            status=201,
            details=_described(
                token,
                expires_at=token.expires_at.isoformat() if token.expires_at else None,
                rules=[str(rule) for rule in rules],
                allowed_cidrs=token.allowed_cidrs or [],
                rate_limit=token.rate_limit,
            ),
        )
    return token, raw


def _create(
    *,
    name: str,
    rules: Sequence[RuleSpec],
    lifetime: timedelta,
    allowed_cidrs: Sequence[str],
    rate_limit: str | None = None,
    family: str | None = None,
) -> tuple[ApiToken, str]:
    raw, parts = tokens.generate()
    # Whole seconds: what a form shows is what is stored, so saving it changes nothing.
    now = timezone.now().replace(microsecond=0)
    expires_at = now + lifetime
    token = ApiToken(
        name=name,
        public_id=parts.public_id,
        secret_hash=tokens.hash_secret(parts.secret, settings.TOKEN_PEPPER),
        created_at=now,
        expires_at=expires_at,
        allowed_cidrs=_cidrs(allowed_cidrs),
        rate_limit=rate_limit or None,
        family=family or parts.public_id,
    )
    token.full_clean()
    token.save()
    _set_rules(token, rules)
    return token, raw


def _lifetime(token: ApiToken) -> timedelta:
    """How long ``token`` was issued for (its expiry as last set, from its creation),
    within today's maximum; the default lifetime for a row from before expiry was
    mandatory (every token expires now)."""
    if token.expires_at is None or token.expires_at <= token.created_at:
        return timedelta(days=settings.TOKEN_DEFAULT_LIFETIME_DAYS)
    longest = timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS)
    return min(token.expires_at - token.created_at, longest)


def _locked(*, name: str | None = None, token_id: int | None = None) -> ApiToken:
    """The token with this name or id, locked for this transaction; raises
    ApiToken.DoesNotExist."""
    tokens = ApiToken.objects.select_for_update()
    return tokens.get(pk=token_id) if token_id is not None else tokens.get(name=name)


def token_update(
    *,
    token_id: int,
    name: str,
    expires_at: datetime | None,
    rules: Sequence[RuleSpec] | None,
    allowed_cidrs: Sequence[str] | None = None,
    rate_limit: str | None = None,
    actor: Actor,
) -> ApiToken:
    """Rename a token, change its expiry, replace its rules (None: leave them as they
    are). Revocation and the secret are not settings: they have their own services (a
    revoked token stays revoked)."""
    with transaction.atomic():
        token = _locked(token_id=token_id)
        before = {
            "name": token.name,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "rules": sorted(str(_rule_of(p)) for p in token.permissions.all()),
            "allowed_cidrs": token.allowed_cidrs or [],
            "rate_limit": token.rate_limit,
        }
        token.name = name
        token.expires_at = expires_at
        token.allowed_cidrs = _cidrs(allowed_cidrs)
        token.rate_limit = rate_limit or None
        token.full_clean()
        token.save(update_fields=["name", "expires_at", "allowed_cidrs", "rate_limit"])
        if rules is not None:
            _set_rules(token, rules)
        after = {
            "name": token.name,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "rules": before["rules"] if rules is None else sorted(str(rule) for rule in rules),
            "allowed_cidrs": token.allowed_cidrs or [],
            "rate_limit": token.rate_limit,
        }
        changes = {
            field: {"from": before[field], "to": after[field]}
            for field in before
            if before[field] != after[field]
        }
        audit_record(
            actor=actor, action=Action.TOKEN_UPDATE, details=_described(token, changes=changes)
        )
    return token


def token_revoke(
    *,
    name: str | None = None,
    token_id: int | None = None,
    family: bool = True,
    reason: str = "",
    actor: Actor,
) -> list[ApiToken]:
    """Revoke a token by name or id (ApiToken.DoesNotExist if there is none) and, unless
    ``family`` is False, every token rotated from or into it: a rotated twin still in
    its overlap would otherwise keep working. Each token revoked gets its own event,
    with the reason; revoking again changes nothing and is still recorded. Returns the
    tokens considered (the family, or the one token)."""
    with transaction.atomic():
        token = _locked(name=name, token_id=token_id)
        members = [token]
        if family:
            members = list(
                ApiToken.objects.select_for_update()
                .filter(Q(family=token.family or token.public_id) | Q(pk=token.pk))
                .order_by("pk")
            )
        now = timezone.now()
        fresh = [member for member in members if not member.revoked]
        for member in fresh:
            member.revoked_at = now
            member.save(update_fields=["revoked_at"])
        for member in fresh or [token]:
            audit_record(
                actor=actor,
                action=Action.TOKEN_REVOKE,
                details=_described(
                    member,
                    family=member.family,
                    whole_family=family,
                    reason=reason,
                    already_revoked=not fresh,
                ),
            )
    return members


ROTATED_SUFFIX = "~"


def token_rotate(*, name: str, overlap_hours: float, actor: Actor) -> tuple[ApiToken, str]:
    """Issue a new token in the old one's family, with its name, rules, address list
    and lifetime (a token issued for 30 days is replaced by one valid 30 days from now,
    not by the default lifetime), and cut the old one's expiry to ``overlap_hours`` from
    now (never later than it was): both work during the overlap, only the new one after
    it. The old token is renamed ``NAME~<public id>``. Returns the new token and its
    one-time plaintext. A revoked or expired token is refused (ValidationError)."""
    if overlap_hours < 0:
        raise ValidationError({"overlap": "The overlap cannot be negative."})
    with transaction.atomic():
        old = _locked(name=name)
        if old.revoked:
            raise ValidationError({"name": "A revoked token cannot be rotated."})
        now = timezone.now().replace(microsecond=0)
        if token_state(old, now=now) == TokenState.EXPIRED:
            # Its holder can no longer authenticate; a rotation would hand them a fresh
            # token all the same. A new one is a deliberate create, with its own review.
            raise ValidationError(
                {"name": "An expired token cannot be rotated; create a new token instead."}
            )
        lifetime = _lifetime(old)
        cutoff = now + timedelta(hours=overlap_hours)
        old.expires_at = min(old.expires_at or cutoff, cutoff)
        old.name = f"{name[: 99 - len(old.public_id)]}{ROTATED_SUFFIX}{old.public_id}"
        old.full_clean()
        old.save(update_fields=["name", "expires_at"])
        rules = [_rule_of(permission) for permission in old.permissions.all()]
        new, raw = _create(
            name=name,
            rules=rules,
            lifetime=lifetime,
            allowed_cidrs=old.allowed_cidrs or (),
            rate_limit=old.rate_limit,
            family=old.family or old.public_id,
        )
        audit_record(
            actor=actor,
            action=Action.TOKEN_ROTATE,
            status=201,
            details=_described(
                new,
                family=new.family,
                previous_token_id=old.pk,
                previous_expires_at=old.expires_at.isoformat(),
                expires_at=new.expires_at.isoformat() if new.expires_at else None,
            ),
        )
    return new, raw


def token_delete(*, name: str, actor: Actor) -> None:
    """Delete a token and its rules (local development only: production revokes)."""
    with transaction.atomic():
        token = _locked(name=name)
        details = _described(token)
        token.delete()
        audit_record(actor=actor, action=Action.TOKEN_DELETE, details=details)


@dataclass(frozen=True)
class TokenProfile:
    name: str
    bootstrap: bool
    family: str
    created_at: datetime | None
    expires_at: datetime | None
    allowed_cidrs: list[str]
    rules: list[RuleSpec]


BOOTSTRAP_RULES = [RuleSpec("*", ("*",), True)]


def token_describe(*, token_id: int | None, name: str, actor: Actor) -> TokenProfile:
    """What a token may do and until when (never its hash), for the token itself; a
    bootstrap token (no id) is ``*`` on ``*``. Recorded like every call."""
    with transaction.atomic():
        if token_id is None:
            profile = TokenProfile(name, True, "", None, None, [], BOOTSTRAP_RULES)
        else:
            token = ApiToken.objects.prefetch_related("permissions").get(pk=token_id)
            profile = TokenProfile(
                name=token.name,
                bootstrap=False,
                family=token.family or token.public_id,
                created_at=token.created_at,
                expires_at=token.expires_at,
                allowed_cidrs=list(token.allowed_cidrs or []),
                rules=[_rule_of(permission) for permission in token.permissions.all()],
            )
        audit_record(actor=actor, action=Action.ME)
    return profile

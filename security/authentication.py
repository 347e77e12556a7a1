"""Bearer-token authentication. Every failure (missing, malformed, bad checksum,
unknown, wrong secret, expired, revoked) gets the same 401, so a caller learns nothing
about which tokens exist; the audit event, not the answer, records why and which public
id was tried (never the secret), so an incident responder can tell a typo from a scan."""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from kernel.clientip import client_ip
from kernel.problems import RateLimited
from kernel.ratelimit import (
    Decision,
    Rate,
    auth_failure_key,
    auth_failure_rate,
    database_now,
    failures_exhausted,
    failures_now_exhausted,
)

from . import tokens
from .access import WILDCARD, InvalidRule, Principal, Rule, split_verbs
from .cards import mask_card_numbers
from .models import ApiToken, QueuePermission, latest_expiry

logger = logging.getLogger(__name__)

INVALID = "Authentication credentials were missing or invalid."
LAST_USED_RESOLUTION = timedelta(minutes=5)
_DUMMY_HASH = "0" * 64


class AuthThrottled(RateLimited):
    """Too many failed authentications from this address: 429, and no token is checked
    (no secret compared, nothing written) until the limit refills."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            "Too many failed authentications from this address; retry later.",
            retry_after_s=decision.retry_after_s,
            limit=decision.limit,
            reset_s=decision.reset_s,
        )


class TokenRefused(AuthenticationFailed):
    """A 401 that tells the audit record (not the caller) why, and which public id.

    The public id is the caller's choice when the token is unknown: any well-formed one
    with a good checksum reaches the trail (``fq_500000000009_...`` holds a Maestro-range
    number), so it is recorded with each card number in it masked."""

    def __init__(self, reason: str, *, public_id: str = "") -> None:
        super().__init__(INVALID)
        self.reason = reason
        self.public_id = mask_card_numbers(public_id)


@lru_cache(maxsize=4)
def _bootstrap_digests(raw_tokens: tuple[str, ...], pepper: str) -> tuple[str, ...]:
    return tuple(tokens.hash_secret(raw, pepper) for raw in raw_tokens)


def _bootstrap_principal(raw: str) -> Principal:
    """AUTH_TOKENS entries act as ``*`` on ``*`` (never admin). Every configured token
    is compared, so timing does not reveal which one matched."""
    digest = tokens.hash_secret(raw, settings.TOKEN_PEPPER)
    matched = None
    digests = _bootstrap_digests(tuple(settings.AUTH_TOKENS), settings.TOKEN_PEPPER)
    for index, candidate in enumerate(digests):
        if hmac.compare_digest(digest, candidate):
            matched = index
    if matched is None:
        raise TokenRefused("unknown")
    rule = Rule.build(WILDCARD, [WILDCARD], allow=True)
    return Principal(name=f"bootstrap-{matched + 1}", rules=(rule,))


# The hot path of every request, as one constant statement: the token, its rules (LEFT
# JOIN) and, in a subquery, the failed-authentication state of the caller's address
# with the database's clock, which are checked before the secret. Hand-written because
# the ORM spent longer compiling this query on each call (~0.5 ms) than the database
# spent running it; _token_principal reads the columns back in this order.
_PRINCIPAL_SQL = """
SELECT t.id, t.name, t.secret_hash, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at, t.allowed_cidrs, t.family, t.rate_limit,
       p.pattern, p.verbs, p.effect,
       {now},
       (SELECT c.tat FROM security_ratecounter c WHERE c.key = %(failure_key)s)
FROM security_apitoken t
LEFT JOIN security_queuepermission p ON p.token_id = t.id
WHERE t.public_id = %(public_id)s
"""


def _aware(value: Any) -> datetime | None:
    """A stored datetime as an aware one (SQLite hands back naive UTC)."""
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def _token_rows(public_id: str, failure_key: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            _PRINCIPAL_SQL.format(now=database_now()),
            {"public_id": public_id, "failure_key": failure_key},
        )
        return list(cursor.fetchall())


# -- the per-process principal cache ---------------------------------------------------
# A token just let in is remembered by this process for PRINCIPAL_CACHE_SECONDS (1 s by
# default): a call within that time skips the database. Only the exact secret finds the
# entry (its digest is compared in constant time), so a guess never does and still meets
# the address's failure limit; expiry is checked on every hit. An address that failed to
# authenticate here within the failure window never uses the cache: like a throttled
# one, it has every token checked against the database (failures seen by other app
# servers reach this one through that check). A revocation, rule change or deletion made
# in this process clears the cache when it commits (a generation count keeps a lookup
# that raced with it from putting the old principal back); made elsewhere (another app
# server, the admin), it reaches this process within the cache time.


@dataclasses.dataclass(frozen=True)
class _Remembered:
    digest: str = dataclasses.field(repr=False)
    principal: Principal
    expires: datetime
    until: float  # time.monotonic() deadline


_remembered: dict[str, _Remembered] = {}
_MAX_REMEMBERED = 10_000
_generation = [0]
# Addresses that failed to authenticate here recently -> time.monotonic() deadline.
_failed_recently: dict[str | None, float] = {}


def forget_principals() -> None:
    """Drop every remembered principal (a token or its rules changed)."""
    _generation[0] += 1
    _remembered.clear()


def note_auth_failure(ip: str | None) -> None:
    """``ip`` failed to authenticate: no cached principal for it for a failure window."""
    if len(_failed_recently) >= _MAX_REMEMBERED:
        _failed_recently.clear()
    _failed_recently[ip] = time.monotonic() + auth_failure_rate().period_s


def _recall(public_id: str, digest: str, ip: str | None) -> Principal | None:
    failed_until = _failed_recently.get(ip)
    if failed_until is not None and time.monotonic() < failed_until:
        return None
    entry = _remembered.get(public_id)
    if entry is None or time.monotonic() >= entry.until:
        return None
    if not hmac.compare_digest(entry.digest, digest) or timezone.now() >= entry.expires:
        return None
    return entry.principal


def _remember(
    public_id: str, digest: str, principal: Principal, expires: datetime, generation: int
) -> None:
    seconds = settings.PRINCIPAL_CACHE_SECONDS
    if seconds <= 0 or generation != _generation[0]:
        return  # disabled, or a change committed while this lookup ran
    if len(_remembered) >= _MAX_REMEMBERED:
        _remembered.clear()
    _remembered[public_id] = _Remembered(digest, principal, expires, time.monotonic() + seconds)


def _token_principal(parts: tokens.TokenParts, ip: str | None) -> Principal:
    """A remembered principal, or one statement (see _PRINCIPAL_SQL)."""
    digest = tokens.hash_secret(parts.secret, settings.TOKEN_PEPPER)
    remembered = _recall(parts.public_id, digest, ip)
    if remembered is not None:
        return remembered
    generation = _generation[0]
    rows = _token_rows(parts.public_id, auth_failure_key(ip))
    if rows and rows[0][-1] is not None:
        throttled = failures_exhausted(rows[0][-1], rows[0][-2], auth_failure_rate())
        if throttled is not None:
            raise AuthThrottled(throttled)
    stored = rows[0][2] if rows else _DUMMY_HASH
    if not hmac.compare_digest(digest, stored) or not rows:
        raise TokenRefused("bad_secret" if rows else "unknown", public_id=parts.public_id)
    token_id, name, _, created_at, expires_at, revoked_at, last_used, cidrs, family, rate = rows[0][
        :10
    ]
    created_at, expires_at, last_used_at = _aware(created_at), _aware(expires_at), _aware(last_used)
    assert created_at is not None
    now = timezone.now()
    if revoked_at is not None:
        raise TokenRefused("revoked", public_id=parts.public_id)
    expires = latest_expiry(created_at)
    if expires_at is not None:
        expires = min(expires, expires_at)
    if now >= expires:
        raise TokenRefused("expired", public_id=parts.public_id)
    try:
        rules = tuple(
            Rule.build(pattern, split_verbs(verbs), allow=effect == QueuePermission.Effect.ALLOW)
            for *_, pattern, verbs, effect, _now, _failures in rows
            if pattern is not None
        )
    except InvalidRule as exc:
        # A rule we cannot read might be a deny: fail closed rather than guess.
        logger.warning("token %s has an unreadable permission rule; refusing it", token_id)
        raise TokenRefused("unreadable_rule", public_id=parts.public_id) from exc
    principal = Principal(
        name=name,
        rules=rules,
        token_id=token_id,
        networks=tuple((json.loads(cidrs) if isinstance(cidrs, str) else cidrs) or ()),
        family=family or "",
        rate=Rate.parse(rate) if rate else None,
        public_id=parts.public_id,
        last_use_due=last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION,
    )
    _remember(parts.public_id, digest, principal, expires, generation)
    return principal


def record_last_use(principal: Principal, ip: str | None) -> None:
    """Note when and from where a token was last let in: at most every few minutes (see
    last_use_due), and only once its address checks passed."""
    if principal.token_id is not None and principal.last_use_due:
        ApiToken.objects.filter(pk=principal.token_id).update(
            last_used_at=timezone.now(), last_used_ip=ip
        )
        entry = _remembered.get(principal.public_id)
        if entry is not None and entry.principal is principal:
            # Recorded: the remembered copy need not record it again.
            done = dataclasses.replace(principal, last_use_due=False)
            _remembered[principal.public_id] = dataclasses.replace(entry, principal=done)


def principal_for(raw: str, *, ip: str | None = None) -> Principal:
    """The principal a presented bearer string stands for; raises TokenRefused."""
    if raw.startswith(tokens.PREFIX):
        parts = tokens.parse(raw)  # bad checksum: refused before any database work
        if parts is None:
            raise TokenRefused("malformed")
        return _token_principal(parts, ip)
    if not settings.AUTH_TOKENS:
        raise TokenRefused("malformed")
    # A bootstrap secret is compared in memory: read the address's failures first, so
    # a throttled address learns nothing from a guess (one query, on a rare path).
    throttled = failures_now_exhausted(auth_failure_key(ip), auth_failure_rate())
    if throttled is not None:
        raise AuthThrottled(throttled)
    return _bootstrap_principal(raw)


def bearer_principal(request: HttpRequest) -> Principal | None:
    """The principal of the request's ``Authorization: Bearer`` token, None without the
    header; raises TokenRefused or AuthThrottled. The DRF views reach it through
    BearerTokenAuthentication, the plain push view directly."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    ip = client_ip(request)
    try:
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw or len(raw) > 512:
            raise TokenRefused("malformed")
        return principal_for(raw, ip=ip)
    except (TokenRefused, AuthThrottled):
        note_auth_failure(ip)
        raise


#: The WWW-Authenticate header of a 401.
AUTHENTICATE_HEADER = 'Bearer realm="flashq"'


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        principal = bearer_principal(request)
        return None if principal is None else (principal, principal)

    def authenticate_header(self, request: Request) -> str:
        return AUTHENTICATE_HEADER

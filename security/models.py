from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from kernel.clientip import normalise_cidr
from kernel.ratelimit import Rate

from .access import (
    NAMED_ONLY,
    VERBS,
    WILDCARD,
    InvalidRule,
    expand_verbs,
    split_verbs,
    validate_pattern,
)


def validate_cidr_list(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('A list of CIDRs, e.g. ["10.20.0.0/16"].', code="invalid_cidrs")
    for item in value:
        try:
            normalise_cidr(item)
        except ValueError as exc:
            raise ValidationError(f"{item!r} is not a CIDR.", code="invalid_cidrs") from exc


def validate_rate_text(value: str | None) -> None:
    if value:
        try:
            Rate.parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid_rate") from exc


class ApiToken(models.Model):
    """A bearer token. The secret itself is never stored: only its HMAC under the
    server pepper (see security/tokens.py).

    Revocation is final, whatever the path (see migration 0002's triggers):
    ``revoked_at`` is set once by ``token_revoke`` and never cleared or moved; the public
    id and secret hash never change; and a revoked public id is remembered in
    ``RevokedPublicId``, so no row can ever carry it again, even after a delete."""

    name = models.CharField(max_length=100, unique=True)
    public_id = models.CharField("public ID", max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # NULL only in rows from before expiry was mandatory; clean() refuses it.
    expires_at = models.DateTimeField(
        null=True, help_text="Every token expires, at most TOKEN_MAX_LIFETIME_DAYS after creation."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Written at most every few minutes (security.authentication), never per request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(
        "last used from", null=True, blank=True, editable=False
    )
    # Tokens rotated from one another share a family (the first one's public id): a
    # lease or an idempotency key held by one is the family's. Nullable without a
    # default so SQLite adds it in place (keeping the 0002 triggers); every row has one.
    family = models.CharField(  # noqa: DJ001
        max_length=16, null=True, blank=True, editable=False, db_index=True
    )
    # Requests per period, e.g. "100/60s"; NULL: no per-token limit.
    rate_limit = models.CharField(  # noqa: DJ001
        max_length=32,
        null=True,
        blank=True,
        validators=[validate_rate_text],
        help_text='Requests per period, e.g. "100/60s" or "5000/1h"; empty: no limit.',
    )
    # NULL or empty: any address ALLOWED_CIDRS allows. Nullable without a default, so
    # adding it did not make SQLite rebuild the table (and drop its triggers).
    allowed_cidrs = models.JSONField(
        "allowed addresses",
        null=True,
        blank=True,
        validators=[validate_cidr_list],
        help_text='Addresses this token may be used from, e.g. ["10.20.0.0/16"]; empty: any.',
    )

    class Meta:
        verbose_name = "API token"
        verbose_name_plural = "API tokens"
        ordering = ["name"]
        permissions = [
            ("review_access", "Can open the access review (every token, staff user and grant)")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_expiry(self) -> datetime:
        return latest_expiry(self.created_at)

    def clean(self) -> None:
        if self.expires_at is None:
            raise ValidationError({"expires_at": "Every token needs an expiry."})
        if self.expires_at > self.latest_expiry:
            raise ValidationError(
                {
                    "expires_at": f"At most {settings.TOKEN_MAX_LIFETIME_DAYS} days after the "
                    f"token was created ({self.latest_expiry:%Y-%m-%d %H:%M} UTC)."
                }
            )

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class RevokedPublicId(models.Model):
    """Every public id ever revoked. Written by a trigger when a token is revoked;
    triggers refuse to change or delete these rows, and refuse any token row that
    carries one of these ids unrevoked."""

    public_id = models.CharField(max_length=16, primary_key=True)
    revoked_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.public_id


def latest_expiry(created_at: datetime) -> datetime:
    """The latest a token created at ``created_at`` may be valid (TOKEN_MAX_LIFETIME_DAYS)."""
    return created_at + timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS)


def validate_pattern_text(value: str) -> None:
    try:
        validate_pattern(value)
    except InvalidRule as exc:
        raise ValidationError(str(exc), code="invalid_pattern") from exc


def validate_verbs_text(value: str) -> None:
    """The same check ``authorize`` relies on: a rule that would not evaluate is never
    stored (it would otherwise lock its token out with no hint why)."""
    try:
        expand_verbs(split_verbs(value), allow=True)
    except InvalidRule as exc:
        raise ValidationError(str(exc), code="invalid_verbs") from exc


class QueuePermission(models.Model):
    """One rule of a token: which verbs it may (or may not) use on queues matching a
    pattern. Verbs are stored comma-separated, in the order given."""

    class Effect(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="permissions")
    pattern = models.CharField(
        max_length=128,
        validators=[validate_pattern_text],
        help_text="Anchored, case-sensitive; * matches any run of characters.",
    )
    verbs = models.CharField(
        max_length=200,
        validators=[validate_verbs_text],
        help_text=f"Comma-separated: {WILDCARD} or any of {', '.join(VERBS)}. "
        f"{WILDCARD} allows every verb but {', '.join(v for v in VERBS if v in NAMED_ONLY)}, "
        "which are allowed only by name (a deny of * denies them too).",
    )
    effect = models.CharField(max_length=5, choices=Effect.choices, default=Effect.ALLOW)

    class Meta:
        verbose_name = "token rule"
        ordering = ["token", "effect", "pattern"]

    def __str__(self) -> str:
        return f"{self.effect} {self.pattern}={self.verbs}"

    def clean(self) -> None:
        self.verbs = ",".join(split_verbs(self.verbs))


class RateCounter(models.Model):
    """GCRA state of one rate limit (kernel.ratelimit): the theoretical arrival time,
    in seconds since the epoch on the database's clock. Shared by every app server."""

    key = models.CharField(max_length=200, primary_key=True)
    tat = models.FloatField()

    def __str__(self) -> str:
        return self.key


class StaffQueueGrant(models.Model):
    """A staff user's or group's right on every queue whose name matches a pattern,
    matched as a token rule's pattern is (security.access.pattern_matches), so a queue
    created after the grant is covered. Made and taken back by ``grant_queue`` with a
    pattern (queues.services.queue_grant); read by queues.staffaccess. One row per
    right, named as the queue's object permissions are (``view_queue``, ...)."""

    pattern = models.CharField(
        max_length=128,
        validators=[validate_pattern_text],
        help_text="Anchored, case-sensitive; * matches any run of characters.",
    )
    permission = models.CharField(max_length=32)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "staff grant on a queue pattern"
        verbose_name_plural = "staff grants on queue patterns"
        ordering = ["pattern", "permission"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="staffqueuegrant_one_grantee",
            ),
            models.UniqueConstraint(
                fields=["pattern", "permission", "user"],
                condition=models.Q(user__isnull=False),
                name="staffqueuegrant_user_uniq",
            ),
            models.UniqueConstraint(
                fields=["pattern", "permission", "group"],
                condition=models.Q(group__isnull=False),
                name="staffqueuegrant_group_uniq",
            ),
        ]

    def __str__(self) -> str:
        grantee = f"group {self.group}" if self.group_id else str(self.user)
        return f"{self.permission} on {self.pattern} for {grantee}"

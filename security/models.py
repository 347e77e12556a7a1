from __future__ import annotations

from django.db import models
from django.utils import timezone

from .access import VERBS


class ApiToken(models.Model):
    """A bearer token. The secret itself is never stored: only its HMAC under the
    server pepper (see security/tokens.py)."""

    name = models.CharField(max_length=100, unique=True)
    public_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class QueuePermission(models.Model):
    """One rule of a token: which verbs it may (or may not) use on queues matching a
    pattern. Verbs are stored comma-separated, in the order given."""

    class Effect(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="permissions")
    pattern = models.CharField(max_length=128)
    verbs = models.CharField(
        max_length=200, help_text=f"Comma-separated: * or any of {', '.join(VERBS)}"
    )
    effect = models.CharField(max_length=5, choices=Effect.choices, default=Effect.ALLOW)

    class Meta:
        ordering = ["token", "effect", "pattern"]

    def __str__(self) -> str:
        return f"{self.effect} {self.pattern}={self.verbs}"

"""System checks: ``manage.py check --deploy`` reports weak secrets as errors (the same
rules production settings enforce at start-up)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from kernel.clientip import normalise_cidr
from kernel.keylists import parse_key_list

from .encryption import parse_keyring
from .strength import weak_secrets


@register(Tags.security, deploy=True)
def check_secrets(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(
            problem,
            hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            id="flashq.E001",
        )
        for problem in weak_secrets(
            secret_key=settings.SECRET_KEY,
            pepper=settings.TOKEN_PEPPER,
            auth_tokens=settings.AUTH_TOKENS,
        )
    ]


@register(Tags.security)
def check_address_lists(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """TRUSTED_PROXIES, ALLOWED_CIDRS and METRICS_ALLOWED_CIDRS must parse, or every
    request (or scrape) would fail."""
    found: list[CheckMessage] = []
    for name in ("TRUSTED_PROXIES", "ALLOWED_CIDRS", "METRICS_ALLOWED_CIDRS"):
        for index, entry in enumerate(getattr(settings, name), start=1):
            try:
                normalise_cidr(entry)
            except ValueError:
                found.append(
                    Error(
                        f"{name} entry {index} is not an address or CIDR",
                        hint="e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32",
                        id="flashq.E002",
                    )
                )
    return found


@register(Tags.security)
def check_encryption_keys(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Job payloads cannot be written or read without a valid keyring."""
    try:
        parse_keyring(settings.ENCRYPTION_KEYS)
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="e.g. ENCRYPTION_KEYS=k1:$(python -c 'import base64,os; "
                "print(base64.b64encode(os.urandom(32)).decode())')",
                id="flashq.E003",
            )
        ]
    return []


@register(Tags.security)
def check_audit_chain_key(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Audit events cannot be sealed into the chain, nor the chain verified, without it."""
    try:
        parse_key_list(settings.AUDIT_CHAIN_KEY, setting="AUDIT_CHAIN_KEY", purpose="HMAC-SHA256")
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="e.g. AUDIT_CHAIN_KEY=a1:$(python -c 'import base64,os; "
                "print(base64.b64encode(os.urandom(32)).decode())')",
                id="flashq.E004",
            )
        ]
    return []

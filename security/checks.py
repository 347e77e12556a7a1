"""System checks: ``manage.py check --deploy`` reports weak secrets as errors (the same
rules production settings enforce at start-up)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

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

"""Production: refuses to start without real secrets; secure cookies and headers.

TLS terminates at the proxy in front of gunicorn (see deploy/); set
``SECURE_SSL_REDIRECT=false`` only where that proxy already redirects.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kernel.keylists import parse_key_list
from security.encryption import parse_keyring
from security.strength import weak_secrets

from .base import *  # noqa: F403
from .base import (
    AUDIT_CHAIN_KEY,
    AUTH_TOKENS,
    DEBUG,
    ENCRYPTION_KEYS,
    SECRET_KEY,
    TOKEN_PEPPER,
    env,
)

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production")
_weak = weak_secrets(secret_key=SECRET_KEY, pepper=TOKEN_PEPPER, auth_tokens=AUTH_TOKENS)
if _weak:
    # Names and reasons only, never a value. Each can also be given as NAME_FILE.
    raise ImproperlyConfigured("weak or missing secrets: " + "; ".join(_weak))
# Job payloads are encrypted at rest: no keyring, no start (the error names the entry
# at fault, never a key).
parse_keyring(ENCRYPTION_KEYS)
# The audit chain is keyed: without the key nothing could be sealed or verified.
parse_key_list(AUDIT_CHAIN_KEY, setting="AUDIT_CHAIN_KEY", purpose="HMAC-SHA256")
# No silent fall-back to a SQLite file (on a read-only root filesystem, at that).
env.str("DATABASE_URL")  # ImproperlyConfigured, naming it, when neither it nor _FILE is set

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and Prometheus call the app server directly, inside the network, in plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# The admin's static files: run ``manage.py collectstatic`` at deployment (into
# STATIC_ROOT); whitenoise serves them compressed, with far-future cache headers.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

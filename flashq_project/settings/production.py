"""Production: refuses to start without real secrets; secure cookies and headers.

TLS terminates at the proxy in front of gunicorn (see deploy/); set
``SECURE_SSL_REDIRECT=false`` only where that proxy already redirects.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEBUG, SECRET_KEY, TOKEN_PEPPER, env

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set: 50+ characters")
if len(TOKEN_PEPPER) < 32:
    raise ImproperlyConfigured("TOKEN_PEPPER (or TOKEN_PEPPER_FILE) must be set: 32+ characters")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

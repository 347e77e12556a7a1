"""Forwarded headers count only when a trusted proxy sent them. Django believes
``SECURE_PROXY_SSL_HEADER`` (X-Forwarded-Proto) from any client, so anyone could claim
https; this middleware, first in the chain, drops the forwarded headers of any peer
outside TRUSTED_PROXIES before anything reads them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from kernel.clientip import peer_is_trusted_proxy
from kernel.middleware import EitherMiddleware

FORWARDED = (
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_SSL",
    "HTTP_X_FORWARDED_PROTOCOL",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


class TrustedProxyHeadersMiddleware(EitherMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if not peer_is_trusted_proxy(request):
            for name in FORWARDED:
                request.META.pop(name, None)
        return self.get_response(request)

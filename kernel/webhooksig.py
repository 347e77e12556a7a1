"""Webhook signatures, Stripe-style: ``X-Flashq-Signature: t=<unix>,v1=<hex>`` where
the hex is HMAC-SHA256, under the webhook's secret (the whole ``whsec_...`` string, as
UTF-8), of ``"<t>.<body>"``. A receiver recomputes it over the raw body, compares in
constant time, and refuses a ``t`` too far from its clock (a replay): the client
library's ``verify_signature`` does all three (its ``TOLERANCE``, 5 minutes, is the one
replay window)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Flashq-Signature"
EVENT_ID_HEADER = "X-Flashq-Event-Id"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"

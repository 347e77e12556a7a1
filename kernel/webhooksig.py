"""Webhook signatures, Stripe-style: ``X-Flashq-Signature: t=<unix>,v1=<hex>`` where
the hex is HMAC-SHA256, under the webhook's secret (the whole ``whsec_...`` string, as
UTF-8), of ``"<t>.<body>"``; after a rotation, a second ``v1`` under the replaced
secret, for the overlap. A receiver recomputes it over the raw body, compares in
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


def signature_header(secret: str, body: bytes, timestamp: int, *older: str) -> str:
    """The header, signed with ``secret`` and then each of ``older`` (secrets still
    honoured after a rotation): a receiver accepts any ``v1`` that matches."""
    signatures = ",".join(f"v1={signature(s, body, timestamp)}" for s in (secret, *older))
    return f"t={timestamp},{signatures}"

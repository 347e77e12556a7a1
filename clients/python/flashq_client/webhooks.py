"""Checking that a webhook delivery came from flashQ.

Each delivery carries ``X-Flashq-Signature: t=<unix seconds>,v1=<hex>``, where the hex
is HMAC-SHA256, keyed with the webhook's secret (the whole ``whsec_...`` string), of
``"<t>.<raw body>"``. Verify it over the raw body, before parsing it::

    from flashq_client import verify_signature, SignatureError

    try:
        verify_signature(secret, request.headers["X-Flashq-Signature"], request.body)
    except SignatureError:
        return 400

A signature more than ``tolerance`` seconds (5 minutes) away from the receiver's clock
is refused, so a captured delivery cannot be replayed later. A delivery may arrive more
than once (a retry after a lost answer): ``X-Flashq-Event-Id`` (the body's ``id``) is
the same each time, so a receiver that must act once keeps the ids it has seen."""

from __future__ import annotations

import hashlib
import hmac
import time

#: The default replay window, in seconds.
TOLERANCE = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, wrong, or outside the window."""


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed signature timestamp")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("the signature header needs t= and v1=")
    return timestamp, signatures


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a delivery's ``X-Flashq-Signature`` against its raw ``body``.

    Args:
        secret: the webhook's signing secret.
        header: the ``X-Flashq-Signature`` header as received (None when missing).
        body: the request's raw body, exactly as received.
        tolerance: the most seconds the signature's timestamp may be from ``now``.
        now: the time to check against (default: the clock).

    Returns:
        The signature's timestamp.

    Raises:
        SignatureError: the header is missing or malformed, no ``v1`` signature
            matches (compared in constant time), or the timestamp is too far from now.
    """
    if not header:
        raise SignatureError("no signature header")
    if not secret:
        raise SignatureError("no secret to check the signature with")
    timestamp, signatures = _parse(header)
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256
    ).hexdigest()
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str.
    wanted = expected.encode()
    given_bytes = [given.encode("utf-8", "surrogateescape") for given in signatures]
    if not any(hmac.compare_digest(wanted, given) for given in given_bytes):
        raise SignatureError("the signature does not match")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        raise SignatureError("the signature is outside the replay window")
    return timestamp

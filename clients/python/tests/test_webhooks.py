"""verify_signature: a delivery's signature checks out over its raw body, and a tampered
body, a wrong secret, an old or future timestamp or a malformed header is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from flashq_client import SignatureError, verify_signature

SECRET = "whsec_test-secret"  # noqa: S105 (a test value)
BODY = b'{"id":"0-1","kind":"completed"}'
NOW = 1_800_000_000


def _header(body: bytes = BODY, t: int = NOW, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def test_a_good_signature_verifies_and_gives_its_time() -> None:
    assert verify_signature(SECRET, _header(), BODY, now=NOW + 10) == NOW
    assert verify_signature(SECRET, _header(), BODY.decode(), now=NOW) == NOW
    # Any of several v1 signatures may match (a receiver mid-rotation).
    other = _header(secret="whsec_other")  # noqa: S106 (a test value).split(",")[1]
    assert verify_signature(SECRET, f"{other},{_header()}", BODY, now=NOW) == NOW


@pytest.mark.parametrize(
    ("header", "body", "secret", "now"),
    [
        (_header(), BODY + b" ", SECRET, NOW),  # tampered body
        (_header(), BODY, "whsec_wrong", NOW),  # wrong secret
        (_header(t=NOW - 301), BODY, SECRET, NOW),  # too old: a replay
        (_header(t=NOW + 301), BODY, SECRET, NOW),  # too far ahead
        (_header().replace(f"t={NOW}", f"t={NOW + 1}"), BODY, SECRET, NOW),  # moved t
        ("", BODY, SECRET, NOW),
        (None, BODY, SECRET, NOW),
        ("t=abc,v1=00", BODY, SECRET, NOW),
        (f"t={NOW}", BODY, SECRET, NOW),
        ("v1=00", BODY, SECRET, NOW),
        ("garbage", BODY, SECRET, NOW),
        (_header(), BODY, "", NOW),
        # A non-ASCII v1 value: SignatureError, not compare_digest's TypeError.
        (f"t={NOW},v1=\u00e9\u00e9", BODY, SECRET, NOW),
        (f"t={NOW},v1=\udcff", BODY, SECRET, NOW),
    ],
)
def test_a_bad_signature_is_refused(header: str | None, body: bytes, secret: str, now: int) -> None:
    with pytest.raises(SignatureError):
        verify_signature(secret, header, body, now=now)


def test_the_window_is_adjustable() -> None:
    header = _header(t=NOW - 600)
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, BODY, now=NOW)
    assert verify_signature(SECRET, header, BODY, tolerance=900, now=NOW) == NOW - 600

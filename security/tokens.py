"""API token format: ``fq_<public id>_<secret><checksum>``.

- public id: 12 base62 characters, the lookup key (not secret);
- secret: 43 base62 characters, 256 bits of entropy (62**43 > 2**256);
- checksum: CRC32 of everything before it, 6 base62 characters, so secret scanners
  can tell a real token from noise offline, and we refuse typos before touching the
  database.

Only ``HMAC-SHA256(pepper, secret)`` is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "fq_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 43
CHECKSUM_LENGTH = 6

_FORMAT = re.compile(
    rf"fq_([0-9A-Za-z]{{{PUBLIC_ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})"
    rf"([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)


@dataclass(frozen=True)
class TokenParts:
    public_id: str
    secret: str


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate() -> tuple[str, TokenParts]:
    """A new token and its parts. The token string is shown once and never stored."""
    parts = TokenParts(_random_base62(PUBLIC_ID_LENGTH), _random_base62(SECRET_LENGTH))
    body = f"{PREFIX}{parts.public_id}_{parts.secret}"
    return body + checksum(body), parts


def parse(raw: str) -> TokenParts | None:
    """The parts of a well-formed token whose checksum holds, else None."""
    match = _FORMAT.fullmatch(raw)
    if match is None:
        return None
    public_id, secret, check = match.groups()
    if checksum(f"{PREFIX}{public_id}_{secret}") != check:
        return None
    return TokenParts(public_id, secret)


def hash_secret(secret: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()

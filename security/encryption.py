"""Job payloads at rest: AES-256-GCM with a keyring.

A sealed value is bytes::

    version (1 byte, 0x01) | key id length (1 byte) | key id (ASCII)
    | nonce (12 random bytes) | ciphertext | tag (16 bytes)

The plaintext is the value's compact JSON. The associated data binds a value to its job
and field (and to the header), so a value copied into another row, another field or
under another key id does not decrypt: GCM's tag check fails instead.

The keyring comes from ``ENCRYPTION_KEYS`` (or ``ENCRYPTION_KEYS_FILE``): comma-separated
``keyid:base64key`` pairs of 32-byte keys. The first key seals; every key opens, so a
retired key stays listed until ``manage.py rotate_encryption_keys`` has re-sealed what
it protected. Errors name the job, the field and the key id, never a key or plaintext.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from kernel.keylists import KEY_BYTES, parse_key_list

from .jsonread import loads

VERSION = 1
NONCE_BYTES = 12
_AAD_PREFIX = b"flashq-job\x00"
_DUMP = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class DecryptionFailed(Exception):
    """A stored value cannot be opened. The message names the job, field and key id,
    never the value."""

    def __init__(self, message: str, *, job_id: uuid.UUID, field: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.field = field


@dataclass(frozen=True)
class Keyring:
    primary: str
    ciphers: Mapping[str, AESGCM]

    @property
    def key_ids(self) -> list[str]:
        return list(self.ciphers)


def generate_key() -> str:
    """A new random key, base64 (what ``keyid:`` is followed by in ENCRYPTION_KEYS)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def parse_keyring(text: str) -> Keyring:
    """``k2:base64,k1:base64`` -> Keyring; ImproperlyConfigured naming the entry (by
    position and id) on any problem, never a key's value."""
    keys = parse_key_list(text, setting="ENCRYPTION_KEYS", purpose="AES-256")
    return Keyring(
        primary=next(iter(keys)), ciphers={kid: AESGCM(key) for kid, key in keys.items()}
    )


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    return parse_keyring(settings.ENCRYPTION_KEYS)


@receiver(setting_changed)
def _forget_keyring(*, setting: str, **kwargs: Any) -> None:
    if setting == "ENCRYPTION_KEYS":
        keyring.cache_clear()


def _header(key_id: str) -> bytes:
    raw = key_id.encode("ascii")
    return bytes((VERSION, len(raw))) + raw


def _aad(header: bytes, job_id: uuid.UUID, field: str) -> bytes:
    return _AAD_PREFIX + header + job_id.bytes + field.encode()


def dump(value: Any) -> bytes:
    """``value`` as the compact UTF-8 JSON that is sealed (and that a cap in bytes
    measures); ValueError for NaN or infinity."""
    return _DUMP(value).encode()


def seal(value: Any, *, job_id: uuid.UUID, field: str) -> bytes:
    """``value`` (JSON-able) encrypted under the primary key for ``job_id``'s ``field``."""
    return seal_dumped(dump(value), job_id=job_id, field=field)


def seal_dumped(plain: bytes, *, job_id: uuid.UUID, field: str) -> bytes:
    """``seal`` of the value whose ``dump`` is ``plain``."""
    ring = keyring()
    header = _header(ring.primary)
    nonce = os.urandom(NONCE_BYTES)
    body = ring.ciphers[ring.primary].encrypt(nonce, plain, _aad(header, job_id, field))
    return header + nonce + body


def key_id_of(blob: bytes) -> str:
    """The id of the key a sealed value is under (no decryption)."""
    if len(blob) < 2 or blob[0] != VERSION:
        raise ValueError("not a sealed value")
    return blob[2 : 2 + blob[1]].decode("ascii", "replace")


def unseal(blob: bytes, *, job_id: uuid.UUID, field: str) -> Any:
    """The value sealed for ``job_id``'s ``field``; DecryptionFailed if it is not
    one, its key is not in the keyring, or it was altered or moved."""
    where = f"job {job_id}: cannot decrypt {field}"
    if len(blob) < 2 or blob[0] != VERSION:
        raise DecryptionFailed(
            f"{where}: not a sealed value (format version)", job_id=job_id, field=field
        )
    header_end = 2 + blob[1]
    key_id = blob[2:header_end].decode("ascii", "replace")
    cipher = keyring().ciphers.get(key_id)
    if cipher is None:
        raise DecryptionFailed(
            f"{where}: key id {key_id!r} is not in ENCRYPTION_KEYS (retired too early?)",
            job_id=job_id,
            field=field,
        )
    nonce_end = header_end + NONCE_BYTES
    try:
        plain = cipher.decrypt(
            blob[header_end:nonce_end], blob[nonce_end:], _aad(blob[:header_end], job_id, field)
        )
    except (InvalidTag, ValueError):
        raise DecryptionFailed(
            f"{where}: authentication failed (altered, copied from another job or field, "
            f"or key {key_id!r} is not the key it was sealed with)",
            job_id=job_id,
            field=field,
        ) from None
    return loads(plain)

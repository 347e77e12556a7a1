"""Secrets given as ``keyid:base64key[,keyid:base64key...]`` (ENCRYPTION_KEYS,
AUDIT_CHAIN_KEY): the first entry is the current key, the others stay listed so what
they protected can still be read or verified. Errors name the setting, the entry's
position and its id, never a key."""

from __future__ import annotations

import base64
import binascii
import re

from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 32
KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def parse_key_list(text: str, *, setting: str, purpose: str) -> dict[str, bytes]:
    """``k2:base64,k1:base64`` -> {key id: 32-byte key}, in the given order; ``purpose``
    names what the keys are for in a message (``AES-256``)."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ImproperlyConfigured(
            f"{setting} is not set: give keyid:base64key pairs (32-byte keys), or {setting}_FILE"
        )
    keys: dict[str, bytes] = {}
    for index, entry in enumerate(entries, start=1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        where = f"{setting} entry {index}"
        if not sep or not KEY_ID_RE.fullmatch(key_id):
            raise ImproperlyConfigured(
                f"{where} must be keyid:base64key, the id 1 to 32 of A-Z a-z 0-9 _ . -"
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"{where}: key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded.strip(), altchars=_altchars(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{where} ({key_id!r}): the key is not base64") from None
        if len(key) != KEY_BYTES:
            raise ImproperlyConfigured(
                f"{where} ({key_id!r}): the key is {len(key)} bytes; {purpose} needs {KEY_BYTES}"
            )
        if len(set(key)) < KEY_BYTES // 2:
            raise ImproperlyConfigured(f"{where} ({key_id!r}): the key is not random")
        keys[key_id] = key
    return keys


def _altchars(encoded: str) -> bytes | None:
    """Accept the URL-safe alphabet too (-_ instead of +/)."""
    return b"-_" if ("-" in encoded or "_" in encoded) else None

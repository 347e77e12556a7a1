"""The audit chain's key and the MACs it makes.

``AUDIT_CHAIN_KEY`` (or ``AUDIT_CHAIN_KEY_FILE``) is ``keyid:base64key[,...]``: the
first key seals, every listed key verifies, so a key is rotated by putting a new one
first and dropping the old one only once no remaining event names it. The key is never
in the database: whoever can write the audit tables (even with the triggers off) cannot
compute a link that verifies. Each link::

    hash = HMAC-SHA256(key, prev_hash || canonical JSON of the event)

where the canonical JSON covers the seq, the previous hash, the key id, the sealing
time (so an event cannot be made to look old enough for retention) and every recorded
field. A checkpoint's ``mac`` covers its own fields and the previous
checkpoint's ``mac``, so the checkpoints form a keyed chain of their own."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from kernel.keylists import parse_key_list

from .models import AuditEvent
from .record import recorded

GENESIS = "0" * 64


class UnknownChainKey(Exception):
    """A link names a key id that AUDIT_CHAIN_KEY does not list."""


@dataclass(frozen=True)
class ChainKeys:
    current: str
    keys: Mapping[str, bytes]

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownChainKey(f"key id {key_id!r} is not in AUDIT_CHAIN_KEY") from None


@lru_cache(maxsize=1)
def chain_keys() -> ChainKeys:
    keys = parse_key_list(
        settings.AUDIT_CHAIN_KEY, setting="AUDIT_CHAIN_KEY", purpose="HMAC-SHA256"
    )
    return ChainKeys(current=next(iter(keys)), keys=keys)


@receiver(setting_changed)
def _forget_chain_keys(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUDIT_CHAIN_KEY":
        chain_keys.cache_clear()


def _utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="microseconds") if moment else None


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(event: AuditEvent, *, seq: int, prev_hash: str, key_id: str) -> bytes:
    """The bytes a link covers: every recorded field and ``sealed_at``, in a fixed
    order and form."""
    body = {
        "seq": seq,
        "prev_hash": prev_hash,
        "key_id": key_id,
        "sealed_at": _utc(event.sealed_at),
        "id": event.pk,
        "created_at": _utc(event.created_at),
        **recorded(event),
    }
    return _dump(body)


def link_hash(event: AuditEvent, *, seq: int, prev_hash: str, key_id: str) -> str:
    """The event's link in the chain; UnknownChainKey if ``key_id`` is not listed."""
    key = chain_keys().key(key_id)
    message = prev_hash.encode() + canonical(event, seq=seq, prev_hash=prev_hash, key_id=key_id)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def checkpoint_mac(
    *,
    seq: int,
    hash: str,
    events_removed: int,
    reason: str,
    created_at: datetime,
    key_id: str,
    prev_mac: str,
) -> str:
    """A checkpoint's MAC (``prev_mac``: the previous checkpoint's, or GENESIS)."""
    body = {
        "seq": seq,
        "hash": hash,
        "events_removed": events_removed,
        "reason": reason,
        "created_at": _utc(created_at),
        "key_id": key_id,
        "prev_mac": prev_mac,
    }
    return hmac.new(chain_keys().key(key_id), _dump(body), hashlib.sha256).hexdigest()

"""What every group of calls shares: the client's settings, path segments, and the
plan of one request whose JSON answer is the result."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._policy import Call, Plan
from .._settings import Settings
from ..fields import seal_fields

#: Seconds the read timeout of a long poll exceeds its wait.
LONG_POLL_MARGIN_SECONDS = 15.0


class CallsBase:
    """The plans of the API's methods (see ``_policy``), for one client's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def seal(self, queue: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """``data`` with the client's ``encrypt_fields`` sealed for ``queue``."""
        return seal_fields(data, queue, self.settings.encrypt_fields, self.settings.field_keys)


def segment(value: str | uuid.UUID, *, safe: str = "") -> str:
    """``value`` quoted as one segment of a URL path."""
    return urllib.parse.quote(str(value), safe=safe)


def queue_segment(name: str) -> str:
    """A queue (or schedule) name as a path segment: ``:`` is kept."""
    return segment(name, safe=":")


def iso(moment: datetime | str | None) -> str | None:
    """A datetime as ISO 8601 text; text and None as they are."""
    return moment.isoformat() if isinstance(moment, datetime) else moment


def fetch(method: str, path: str, *, idempotent: bool, body: Any = None, **call: Any) -> Plan[Any]:
    """One request; its JSON answer."""
    response = yield Call(method=method, path=path, body=body, idempotent=idempotent, **call)
    return response.json()

"""Refusals of an address that is already throttled are not recorded one by one, or a
flood would grow the append-only trail without bound: they are counted per address and
window, and only the 1st, 2nd, 4th, 8th, ... of a window is recorded, with the count."""

from __future__ import annotations

import time
from typing import Any

from kernel.ratelimit import auth_failure_rate, count_throttled

from .record import Action, Actor, audit_refusal


def record_throttled_refusal(
    *, actor: Actor, action: Action, status: int, details: dict[str, Any] | None = None
) -> None:
    window = auth_failure_rate().period_s
    count = count_throttled(ip=actor.client_ip, window_s=window, now_s=time.time())
    if count & (count - 1) == 0:
        audit_refusal(
            actor=actor,
            action=action,
            status=status,
            details={**(details or {}), "throttled": str(count), "window_s": f"{window:g}"},
        )

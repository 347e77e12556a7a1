"""Retry delay after a failed attempt.

``fixed``: ``delay`` every time. ``exponential``: ``delay * 2**(attempt - 1)``. Either is
capped at ``max`` and then shortened by up to ``jitter`` (a fraction), so retries of
jobs that failed together spread out instead of stampeding, and never exceed the cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def retry_delay_ms(
    backoff: dict[str, Any], attempt: int, *, rand: Callable[[], float] = random.random
) -> int:
    delay = int(backoff.get("delay", 1000))
    cap = int(backoff.get("max", 3_600_000))
    jitter = float(backoff.get("jitter", 0))
    if backoff.get("type") == "exponential":
        # Bound the exponent before multiplying: 2**10000 is not a useful number.
        raw = delay * 2 ** min(max(attempt - 1, 0), 62)
    else:
        raw = delay
    capped = min(raw, cap)
    return int(capped * (1 - jitter * rand()))

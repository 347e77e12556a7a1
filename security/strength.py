"""How strong a configured secret is. Plain values in, reasons out; used by production
settings (which refuse to start) and by the system checks (``manage.py check
--deploy``). Reasons name the setting, never its value."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

MIN_BITS = 128
MIN_LENGTHS = {"SECRET_KEY": 50, "TOKEN_PEPPER": 32, "AUTH_TOKENS": 32}


def entropy_bits(value: str) -> float:
    """The string's length times its empirical Shannon entropy per character: 0 for
    ``aaaa...``, low for ``abab...``, about 5.5 bits a character for random base64."""
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


def weakness(value: str, *, min_length: int) -> str | None:
    """Why ``value`` is not a strong secret, or None."""
    if not value:
        return "is not set"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if entropy_bits(value) < MIN_BITS:
        return f"has too little entropy (under {MIN_BITS} bits: repeated characters?)"
    return None


def weak_secrets(*, secret_key: str, pepper: str, auth_tokens: Iterable[str]) -> list[str]:
    """One line per weak secret, e.g. ``TOKEN_PEPPER is shorter than 32 characters``."""
    found = []
    for name, value in (("SECRET_KEY", secret_key), ("TOKEN_PEPPER", pepper)):
        why = weakness(value, min_length=MIN_LENGTHS[name])
        if why:
            found.append(f"{name} {why}")
    for index, token in enumerate(auth_tokens, start=1):
        why = weakness(token, min_length=MIN_LENGTHS["AUTH_TOKENS"])
        if why:
            found.append(f"AUTH_TOKENS entry {index} {why}")
    return found

"""How strong a configured secret is. Plain values in, reasons out; used by production
settings (which refuse to start) and by the system checks (``manage.py check
--deploy``). Reasons name the setting, never its value."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

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
    if _has_long_run(value) or _compresses(value):
        return "follows a pattern (a sequence or repetition), not a random value"
    if value.startswith("django-insecure-"):
        return "is Django's generated development key"
    return None


def _has_long_run(value: str, longest: int = 8) -> bool:
    """A run of characters each one code point after (or before) the last, in one
    direction: abcdefgh, 98765432."""
    run, step = 1, 0
    for previous, current in pairwise(value):
        delta = ord(current) - ord(previous)
        run = run + 1 if delta in (1, -1) and delta == step else 2 if delta in (1, -1) else 1
        step = delta
        if run >= longest:
            return True
    return False


def _compresses(value: str) -> bool:
    """Random text barely compresses; a repeated pattern does (abcdabcd...)."""
    raw = value.encode()
    return len(zlib.compress(raw, 9)) < 0.6 * len(raw)


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

"""Reading JSON as Python's json module reads it, at orjson's speed.

orjson parses where its answer is the json module's. It refuses NaN, Infinity, 1e400,
lone surrogates, invalid UTF-8, a BOM and nesting past 1024 levels, and the json module
then parses the text again, so each of those keeps its answer. The one value it reads
differently, an integer past 64 bits (made a float), takes 19 digits in a row: such
texts go to the json module at once (tests/test_json_answers.py pins each answer).

Used for request bodies (queues.api.parsers) and for opening sealed values
(security.encryption.unseal: 100 jobs' data in a pull spent 8.6% of its thread's time
in the json module)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from .payloads import finite_float


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# An integer orjson would not read as the json module does (beyond int64/uint64) has
# at least 19 digits; so do some strings and floats, which merely take the slower path.
# Looked for as a run of 19 zeros once every digit is a zero: a regex took 12 ns a byte.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"0" * 19


def loads(body: bytes) -> Any:
    """``body`` parsed as the json module parses it (strict UTF-8, no NaN or Infinity,
    exact big integers); ValueError (NonFiniteNumber for 1e400) or RecursionError if it
    cannot be."""
    if _LONG_DIGITS not in body.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the json module gives the answer, whatever it is
    # Decode strictly ourselves: json.loads(bytes) would accept UTF-16/32 and decode
    # with "surrogatepass", letting encoded lone surrogates through.
    text = body.decode("utf-8")
    return json.loads(text, parse_constant=_reject_constant, parse_float=finite_float)

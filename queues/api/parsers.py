"""JSON parsing with a size cap applied before the body is read into memory, and a check
that what was parsed can be stored (security.payloads).

orjson parses where its answer is the json module's. It refuses NaN, Infinity, 1e400,
lone surrogates, invalid UTF-8, a BOM and nesting past 1024 levels, and the json module
then parses the body again, so each of those keeps its answer of before. The one value
it reads differently, an integer past 64 bits (made a float), takes 19 digits in a row:
such bodies go to the json module at once (tests/test_json_answers.py pins each answer).
One answer did change: nesting of some 900 to 1024 levels ran the json module into the
recursion limit (how deep depended on the caller's stack), a 400 "not valid JSON"; orjson
reads it, and it is the 400 of any body nested past MAX_DEPTH, naming where.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from kernel.limits import MAX_CONTAINERS
from kernel.problems import FieldError, InvalidInput, PayloadTooLarge
from security.payloads import (
    NonFiniteNumber,
    finite_float,
    json_problem,
    may_hold_unstorable_strings,
)


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


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        # A view whose queues are only known from its body (batch ack) parses before it
        # can authorise, so it sets a smaller cap.
        view = (parser_context or {}).get("view")
        limit = min(settings.MAX_REQUEST_BYTES, getattr(view, "max_body_bytes", None) or math.inf)
        limit = int(limit)
        too_large = PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise too_large
        if body.count(b"[") + body.count(b"{") > MAX_CONTAINERS:
            raise PayloadTooLarge(
                f"The request body holds more than {MAX_CONTAINERS} arrays and objects.",
                errors=[FieldError("/", f"more than {MAX_CONTAINERS} arrays and objects")],
            )
        try:
            value = loads(body)
        except NonFiniteNumber as exc:
            raise InvalidInput(
                "The request body holds a value that cannot be stored.",
                errors=[FieldError("/", "a number is too large")],
            ) from exc
        except (ValueError, RecursionError) as exc:
            # RecursionError: absurdly deep nesting; still just malformed input.
            raise ParseError("The request body is not valid JSON.") from exc
        problem = json_problem(value, check_strings=may_hold_unstorable_strings(body))
        if problem is not None:
            path, message = problem
            raise InvalidInput(
                "The request body holds a value that cannot be stored.",
                errors=[FieldError(path, message)],
            )
        return value

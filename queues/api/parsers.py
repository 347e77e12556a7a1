"""JSON parsing with a size cap applied before the body is read into memory, and a check
that what was parsed can be stored (security.payloads). The parse itself is
security.jsonread's: orjson where its answer is the json module's, the json module
otherwise (tests/test_json_answers.py pins each answer).

One answer did change when orjson came in: nesting of some 900 to 1024 levels ran the
json module into the recursion limit (how deep depended on the caller's stack), a 400
"not valid JSON"; orjson reads it, and it is the 400 of any body nested past MAX_DEPTH,
naming where.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from kernel.limits import MAX_CONTAINERS
from kernel.problems import FieldError, InvalidInput, PayloadTooLarge
from security.jsonread import loads
from security.payloads import (
    NonFiniteNumber,
    json_problem,
    may_hold_unstorable_strings,
)


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

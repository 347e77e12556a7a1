"""OpenAPI helpers: every operation is documented under its Operation's id with its
problem+json error responses, and the schema states the rules the server enforces."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema

from kernel import limits
from kernel.limits import PATTERN_RE, QUEUE_NAME_RE, QUEUE_NAME_RULE

from .operations import Operation
from .serializers import ProblemOut

#: How a repeated ack is answered (ack, batch ack, a pull's ``ack``).
ACK_REPLAY = (
    "Safe to repeat: an ack of a job that the same lease (and token family) already "
    "completed is answered as the first was, for FLASHQ_ACK_REPLAY_SECONDS (15 minutes) "
    "from its `finished_at`, and changes nothing: the job is not completed again, a "
    "different `result` in the repeat is ignored, and no event, webhook or settling of "
    "what waits for it happens twice (the call is audited as a replay). After that "
    "window, or once the job was retried or erased, the repeat is a 409."
)
QUEUE_NAME_PATTERN = f"^{QUEUE_NAME_RE.pattern}$"
QUEUE_PATTERN = f"^{PATTERN_RE.pattern}$"

_MEANING = {
    400: "Malformed or invalid input (field paths in `errors`)",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "The token may not use this verb on this queue",
    404: "Unknown job or queue (also for jobs in queues the token cannot see)",
    409: "Stale or foreign lease, the job is in the wrong state, or another token's "
    "unfinished job holds the idempotency key",
    411: "Chunked body: send a Content-Length",
    413: "Body larger than MAX_REQUEST_BYTES, or job data or a result larger than "
    "MAX_JOB_BYTES (the field is named in `errors`)",
    415: "Body is not application/json",
    422: "A payment card number or card secret where the server would store it (a body "
    "field, the `/queue` in the path, or `/headers/X-Request-ID`; each named in `errors`, "
    "nothing stored), job data that fails the queue's JSON Schema, a `depends_on` id "
    "that names no job this token may read (`unknown_dependency`), or a `depends_on` "
    f"that would make jobs wait on each other more than {limits.MAX_WAIT_DEPTH} deep "
    "(`wait_too_deep`)",
    503: "The database is unavailable (down, restarting or out of connections); nothing "
    "was done and the request may be retried after `Retry-After` seconds",
}

# 422 on every route: any call may carry an X-Request-ID holding a card number.
COMMON = (400, 401, 403, 422, 503)

# 429 can answer any API call: failed authentications from one address are throttled
# before any token is checked, and a token with a rate limit is refused past it. So it
# is added to every operation in one place (strict_schema_hook), not listed per view.
RATE_LIMITED = (
    "Rate limited: too many failed authentications from this address (refused before "
    "any token is checked), or the token is over its rate limit. Nothing was done; the "
    "request may be sent again after `Retry-After` seconds"
)
RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before sending the request again",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
_RATE_HEADERS: dict[str, Any] = {
    name: {"description": description, "schema": {"type": "integer", "minimum": 0}}
    for name, description in (
        ("RateLimit-Limit", "The limit that refused the call (requests per window)"),
        ("RateLimit-Remaining", "Requests left in the window: 0"),
        ("RateLimit-Reset", "Seconds until the window is full again"),
    )
}


def problems(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    return {
        (status, "application/problem+json"): OpenApiResponse(
            ProblemOut, description=_MEANING[status]
        )
        for status in sorted({*COMMON, *statuses})
    }


def operation_schema(operation: Operation, **kwargs: Any) -> Any:
    """``extend_schema`` for one operation: its id comes from the Operation."""
    return extend_schema(operation_id=operation.operation_id, **kwargs)


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describes security.authentication.BearerTokenAuthentication in the schema."""

    target_class = "security.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An fq_ API token (manage.py create_token) or a bootstrap token.",
        }


# Strings the server stores: no NUL (PostgreSQL's jsonb and text refuse it).
NUL = "\\u0000"
NO_NUL = f"^[^{NUL}]*$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]{22}$"

# Object keys without NUL. ``propertyNames`` says it in JSON Schema 2019-09+ (OpenAPI 3.1);
# this document is OpenAPI 3.0, read with Draft 4 semantics, where ``propertyNames`` does
# not exist and is ignored. ``patternProperties`` is Draft 4: a key holding a NUL must
# match ``not: {}``, which nothing does.
NUL_FREE_KEYS: dict[str, Any] = {
    "propertyNames": {"pattern": NO_NUL},
    "patternProperties": {NUL: {"not": {}}},
}

# Any JSON value the server can store: strings and keys without NUL, at most MAX_DEPTH
# levels deep (depth, lone surrogates and the range of a float cannot be said here:
# see the description).
STORABLE_JSON: dict[str, Any] = {
    "description": "Any JSON value the server can store: strings and object keys without "
    "NUL (U+0000) and without lone surrogates (e.g. an unpaired `\\ud800` escape), numbers "
    f"that are finite as a double (no `1e400`), nesting at most {limits.MAX_DEPTH} levels "
    "deep. Anything else is a 400 naming the offending path.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        # OpenAPI 3.0.3: nullable only counts next to a type, so null rides on a branch.
        {"type": "boolean", "nullable": True},
        {"type": "array", "items": {"$ref": "#/components/schemas/StorableJson"}},
        {
            "type": "object",
            **NUL_FREE_KEYS,
            "additionalProperties": {"$ref": "#/components/schemas/StorableJson"},
        },
    ],
}

STORABLE_OBJECT: dict[str, Any] = {
    "type": "object",
    **NUL_FREE_KEYS,
    "additionalProperties": {"$ref": "#/components/schemas/StorableJson"},
}

# What every request body must satisfy and no keyword above can say (security.payloads).
BODY_RULES = (
    "Anywhere in a request body, strings and object keys must not hold NUL (U+0000) or "
    "lone surrogates, numbers must be finite as a double (no `1e400`) and nesting is at "
    f"most {limits.MAX_DEPTH} levels deep; anything else is a 400 naming the path."
)


def _tighten(component: dict[str, Any]) -> None:
    """A request body: unknown fields refused, strings without NUL, free-form JSON
    (data, result) as storable JSON."""
    if component.get("type") != "object":
        return
    component["additionalProperties"] = False
    for name, prop in component.get("properties", {}).items():
        if prop.get("type") == "string" and "format" not in prop and "enum" not in prop:
            prop.setdefault("pattern", NO_NUL)
        elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
            prop["items"].setdefault("pattern", NO_NUL)
        if name == "data":
            prop.clear()
            prop.update(
                {
                    **copy.deepcopy(STORABLE_OBJECT),
                    "description": "A JSON object; see StorableJson.",
                }
            )
        elif name == "result":
            prop.clear()
            prop.update({"$ref": "#/components/schemas/StorableJson"})


def strict_schema_hook(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Say in the schema what the API enforces: request bodies refuse unknown fields
    and NULs, queue names follow their rule, job ids are UUIDs, cursors are ours; what
    JSON Schema cannot say is in the descriptions."""
    info = result.setdefault("info", {})
    info["description"] = f"{info.get('description', '')}\n\n{BODY_RULES}".strip()
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["StorableJson"] = copy.deepcopy(STORABLE_JSON)
    for name, component in schemas.items():
        if name.endswith("Request"):
            _tighten(component)
    # Each job id at most once per batch ack, and per pull's piggy-backed acks. JSON
    # Schema cannot say "distinct by id" (the operations' descriptions do); uniqueItems
    # says the part it can: no repeated item.
    for component, field in (("AckBatchInRequest", "jobs"), ("PullInRequest", "ack")):
        acks = schemas.get(component, {}).get("properties", {}).get(field)
        if acks is not None:
            acks["uniqueItems"] = True
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            _document_retries(operation)
            for parameter in operation.get("parameters", []):
                _document_parameter(path, parameter)
    return result


def _document_parameter(path: str, parameter: dict[str, Any]) -> None:
    """A path or query parameter's rule, as the server checks it."""
    if parameter.get("in") == "path" and parameter["name"] == "queue":
        if path.endswith("/clean"):  # a pattern: * is any run of characters
            parameter["schema"] = {"type": "string", "pattern": QUEUE_PATTERN}
            parameter["description"] = "A queue name, or a pattern with *"
            return
        parameter["schema"] = {"type": "string", "pattern": QUEUE_NAME_PATTERN}
        parameter["description"] = QUEUE_NAME_RULE
    elif parameter.get("in") == "path" and parameter["name"] == "job_id":
        parameter["schema"] = {"type": "string", "format": "uuid"}
    elif parameter.get("in") == "path" and "/schedules/{name}" in path:
        # A schedule's name follows the queue name's rule (Schedule.name).
        parameter["schema"] = {"type": "string", "pattern": QUEUE_NAME_PATTERN}
        parameter["description"] = "The schedule's name: " + QUEUE_NAME_RULE
    elif parameter.get("in") == "query" and parameter["name"] == "cursor":
        parameter["schema"] = {"type": "string", "pattern": CURSOR_PATTERN}


def _document_retries(operation: dict[str, Any]) -> None:
    """Every operation may answer 429, and 503, each with ``Retry-After``."""
    responses = operation.setdefault("responses", {})
    responses["429"] = {
        "description": RATE_LIMITED,
        "headers": {"Retry-After": copy.deepcopy(RETRY_AFTER), **copy.deepcopy(_RATE_HEADERS)},
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
        },
    }
    if "503" in responses:
        responses["503"].setdefault("headers", {})["Retry-After"] = copy.deepcopy(RETRY_AFTER)
    operation["responses"] = dict(sorted(responses.items()))

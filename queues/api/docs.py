"""OpenAPI helpers: every operation is documented under its Operation's id with its
problem+json error responses, and the schema states the rules the server enforces."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema

from flashq_project import limits

from ..models import QUEUE_NAME_RE, QUEUE_NAME_RULE
from .operations import Operation
from .serializers import ProblemOut

QUEUE_NAME_PATTERN = f"^{QUEUE_NAME_RE.pattern}$"

_MEANING = {
    400: "Malformed or invalid input (field paths in `errors`)",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "The token may not use this verb on this queue",
    404: "Unknown job or queue (also for jobs in queues the token cannot see)",
    409: "Stale or foreign lease, or the job is in the wrong state",
    411: "Chunked body: send a Content-Length",
    413: "Body larger than MAX_REQUEST_BYTES, or job data or a result larger than "
    "MAX_JOB_BYTES (the field is named in `errors`)",
    415: "Body is not application/json",
    503: "The database is unavailable (down, restarting or out of connections); nothing "
    "was done and the request may be retried after `Retry-After` seconds",
}

COMMON = (400, 401, 403, 503)


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
NO_NUL = "^[^\\u0000]*$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]{22}$"

# Any JSON value the server can store: strings and keys without NUL, at most MAX_DEPTH
# levels deep (depth, and lone surrogates, cannot be said in JSON Schema: see the
# descriptions).
STORABLE_JSON: dict[str, Any] = {
    "description": f"Any JSON value; strings and keys without NUL, nesting at most "
    f"{limits.MAX_DEPTH} levels deep.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"$ref": "#/components/schemas/StorableJson"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/StorableJson"},
        },
    ],
    "nullable": True,
}
STORABLE_OBJECT: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/StorableJson"},
}


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
            prop.update({**STORABLE_OBJECT, "description": "A JSON object; see StorableJson."})
        elif name == "result":
            prop.clear()
            prop.update({"$ref": "#/components/schemas/StorableJson"})


def strict_schema_hook(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Say in the schema what the API enforces: request bodies refuse unknown fields
    and NULs, queue names follow their rule, job ids are UUIDs, cursors are ours."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["StorableJson"] = STORABLE_JSON
    for name, component in schemas.items():
        if name.endswith("Request"):
            _tighten(component)
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] == "queue":
                    parameter["schema"] = {"type": "string", "pattern": QUEUE_NAME_PATTERN}
                    parameter["description"] = QUEUE_NAME_RULE
                elif parameter.get("in") == "path" and parameter["name"] == "job_id":
                    parameter["schema"] = {"type": "string", "format": "uuid"}
                elif parameter.get("in") == "query" and parameter["name"] == "cursor":
                    parameter["schema"] = {"type": "string", "pattern": CURSOR_PATTERN}
    return result

"""OpenAPI helpers: every route documents its problem+json error responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse

from ..models import QUEUE_NAME_RE, QUEUE_NAME_RULE
from .serializers import ProblemOut

QUEUE_NAME_PATTERN = f"^{QUEUE_NAME_RE.pattern}$"

_MEANING = {
    400: "Malformed or invalid input (field paths in `errors`)",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "The token may not use this verb on this queue",
    404: "Unknown job or queue (also for jobs in queues the token cannot see)",
    409: "Stale or foreign lease, or the job is in the wrong state",
    413: "Body larger than MAX_REQUEST_BYTES, or job data larger than MAX_JOB_BYTES",
    411: "Chunked body: send a Content-Length",
    415: "Body is not application/json",
}

COMMON = (400, 401, 403)


def problems(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    return {
        (status, "application/problem+json"): OpenApiResponse(
            ProblemOut, description=_MEANING[status]
        )
        for status in sorted({*COMMON, *statuses})
    }


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


def strict_schema_hook(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Say in the schema what the API enforces: request bodies refuse unknown fields,
    queue names follow their rule, job ids are UUIDs."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":
                    continue
                if parameter["name"] == "queue":
                    parameter["schema"] = {"type": "string", "pattern": QUEUE_NAME_PATTERN}
                    parameter["description"] = QUEUE_NAME_RULE
                elif parameter["name"] == "job_id":
                    parameter["schema"] = {"type": "string", "format": "uuid"}
    return result

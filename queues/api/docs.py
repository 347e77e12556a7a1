"""OpenAPI helpers: every route documents its problem+json error responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

from .serializers import ProblemOut

_MEANING = {
    400: "Malformed or invalid input (field paths in `errors`)",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "The token may not use this verb on this queue",
    404: "Unknown job or queue (also for jobs in queues the token cannot see)",
    409: "Stale or foreign lease, or the job is in the wrong state",
    413: "Body larger than MAX_REQUEST_BYTES, or job data larger than MAX_JOB_BYTES",
    415: "Body is not application/json",
}

COMMON = (400, 401, 403)


def problems(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(ProblemOut, description=_MEANING[status])
        for status in sorted({*COMMON, *statuses})
    }

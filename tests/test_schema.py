from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.utils import timezone

from queues import jobspec
from queues.api import representations, serializers
from queues.models import Job, Queue
from security.access import Principal

from .support import Api

pytestmark = pytest.mark.django_db

ROUTES = {
    ("/api/v1/queues", "get"),
    ("/api/v1/queues/{queue}", "get"),
    ("/api/v1/queues/{queue}/pause", "post"),
    ("/api/v1/queues/{queue}/resume", "post"),
    ("/api/v1/queues/{queue}/jobs", "post"),
    ("/api/v1/queues/{queue}/jobs", "get"),
    ("/api/v1/queues/{queue}/jobs/batch", "post"),
    ("/api/v1/queues/{queue}/pull", "post"),
    ("/api/v1/jobs/ack", "post"),
    ("/api/v1/jobs/{job_id}", "get"),
    ("/api/v1/jobs/{job_id}", "patch"),
    ("/api/v1/jobs/{job_id}/ack", "post"),
    ("/api/v1/jobs/{job_id}/fail", "post"),
    ("/api/v1/jobs/{job_id}/progress", "post"),
    ("/api/v1/jobs/{job_id}/cancel", "post"),
    ("/api/v1/jobs/{job_id}/retry", "post"),
}


@pytest.fixture
def schema(api: Api) -> dict[str, Any]:
    response = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(response.json())


def test_the_schema_describes_every_route_with_its_error_responses(schema: dict[str, Any]) -> None:
    found = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert found == ROUTES
    for path, method in ROUTES:
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "401", "403"} <= set(responses), (path, method)
        assert set(responses["401"]["content"]) == {"application/problem+json"}
        assert "#/components/schemas/Problem" in str(responses["401"]["content"])
        assert schema["paths"][path][method]["security"] == [{"bearerAuth": []}]
    push = schema["paths"]["/api/v1/queues/{queue}/jobs"]["post"]
    assert {"200", "201", "413", "415"} <= set(push["responses"])
    assert "requestBody" in push
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    components = schema["components"]["schemas"]
    assert components["PushInRequest"]["properties"]["data"]["type"] == "object"
    jobs = components["PushBatchInRequest"]["properties"]["jobs"]
    assert (jobs["minItems"], jobs["maxItems"]) == (1, 1000)
    assert schema["paths"]["/api/v1/jobs/{job_id}"]["patch"]["requestBody"]["required"] is True
    assert components["PushInRequest"]["additionalProperties"] is False
    assert components["PullInRequest"]["additionalProperties"] is False
    [queue_param] = schema["paths"]["/api/v1/queues/{queue}/pull"]["post"]["parameters"]
    assert re.fullmatch(queue_param["schema"]["pattern"], "jobs:email")
    assert not re.fullmatch(queue_param["schema"]["pattern"], "-bad")


def test_the_docs_page_is_served_without_a_token(api: Api) -> None:
    response = api.client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def _job() -> Job:
    queue = Queue.objects.create(name="q")
    return Job.objects.create(queue=queue, data={}, lease_id=uuid.uuid4(), lease_owner="token:1")


def test_documented_shapes_match_what_the_api_returns() -> None:
    job, now = _job(), timezone.now()
    assert set(serializers.PushIn().fields) == set(jobspec.FIELDS)
    assert set(serializers.BackoffDoc().fields) == set(jobspec.BACKOFF_FIELDS)
    assert set(serializers.JobSummaryOut().fields) == set(
        representations.job_summary(job, "q", now)
    )
    assert set(serializers.LeasedJobOut().fields) == set(representations.job_leased(job, "q"))
    holder = Principal(name="t", rules=(), token_id=1)
    assert set(serializers.JobDetailOut().fields) == set(
        representations.job_detail(job, holder, now)
    )
    assert set(serializers.QueueOut().fields) == set(representations.queue_summary(job.queue))

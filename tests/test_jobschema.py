"""Per-queue JSON Schemas: the security guide's zod schemas as JSON Schema 2020-12, with
formats asserted; push and update are validated (422 listing every failing path); a
schema that is invalid or refers outside itself is refused when saved."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent
from queues.models import Job

from .personas import superuser_client
from .support import Api, push

pytestmark = pytest.mark.django_db

UUID = "550e8400-e29b-41d4-a716-446655440000"

# validation/job-schemas.ts of the guide, rule for rule.
EMAIL = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "subject", "body"],
    "properties": {
        "to": {"type": "string", "format": "email", "maxLength": 254},
        "subject": {"type": "string", "maxLength": 998},
        "body": {"type": "string", "maxLength": 1048576},
        "attachments": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "required": ["filename", "contentType", "size"],
                "properties": {
                    "filename": {
                        "type": "string",
                        "maxLength": 255,
                        "pattern": "^[a-zA-Z0-9._-]+$",
                    },
                    "contentType": {"type": "string", "maxLength": 100},
                    "size": {"type": "number", "maximum": 10485760},
                },
            },
        },
    },
}
PAYMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["orderId", "amount", "currency", "customerId"],
    "properties": {
        "orderId": {"type": "string", "format": "uuid"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 999999.99},
        "currency": {"enum": ["USD", "EUR", "GBP"]},
        "customerId": {"type": "string", "format": "uuid"},
    },
}
IMAGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["imageUrl", "operations", "outputFormat"],
    "properties": {
        "imageUrl": {"type": "string", "format": "uri", "pattern": "^https://"},
        "operations": {
            "type": "array",
            "maxItems": 10,
            "items": {"enum": ["resize", "crop", "rotate", "compress"]},
        },
        "outputFormat": {"enum": ["jpeg", "png", "webp"]},
    },
}

CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], set[str]]] = [
    (
        EMAIL,
        {"to": "user@example.com", "subject": "Hello", "body": "Content here"},
        {
            "to": "not-an-email",
            "subject": "x" * 999,
            "body": "b",
            "attachments": [{"filename": "../etc/passwd", "contentType": "text/plain", "size": 1}],
        },
        {"/data/to", "/data/subject", "/data/attachments/0/filename"},
    ),
    (
        PAYMENT,
        {"orderId": UUID, "amount": 10.5, "currency": "EUR", "customerId": UUID},
        {"orderId": "42", "amount": 0, "currency": "JPY", "customerId": UUID},
        {"/data/orderId", "/data/amount", "/data/currency"},
    ),
    (
        IMAGE,
        {
            "imageUrl": "https://cdn.example.com/a.png",
            "operations": ["resize"],
            "outputFormat": "png",
        },
        {
            "imageUrl": "http://cdn.example.com/a.png",
            "operations": ["explode"],
            "outputFormat": "gif",
        },
        {"/data/imageUrl", "/data/operations/0", "/data/outputFormat"},
    ),
]


@pytest.mark.parametrize(
    ("schema", "good", "bad", "paths"), CASES, ids=["email", "payment", "image"]
)
def test_the_guide_s_schemas_accept_good_jobs_and_name_every_fault_of_bad_ones(
    api: Api, full: str, schema: Any, good: Any, bad: Any, paths: set[str]
) -> None:
    assert api.request("PUT", "/queues/jobs:s/schema", {"schema": schema}, as_=full).status == 200
    assert api.post("/queues/jobs:s/jobs", {"data": good}, as_=full).status == 201
    call = api.post("/queues/jobs:s/jobs", {"data": bad}, as_=full)
    assert call.status == 422 and call.body["code"] == "schema_validation_failed"
    assert {error["path"] for error in call.body["errors"]} == paths
    assert Job.objects.count() == 1
    batch = {"jobs": [{"data": good}, {"data": bad}]}
    call = api.post("/queues/jobs:s/jobs/batch", batch, as_=full)
    assert call.status == 422 and {e["path"] for e in call.body["errors"]} == {
        path.replace("/data", "/jobs/1/data") for path in paths
    }
    job = Job.objects.get()
    assert api.patch(f"/jobs/{job.id}", {"data": bad}, as_=full).status == 422
    assert api.patch(f"/jobs/{job.id}", {"data": good}, as_=full).status == 200


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://evil.example.com/schema.json"},
        {"properties": {"a": {"$ref": "http://127.0.0.1:9/x"}}},
        {"type": "bogus"},
        {"properties": {"a": {"minLength": -1}}},
        "not an object",
        # Another draft, or a meta-schema that would have to be fetched.
        {"$schema": "http://json-schema.org/draft-07/schema#"},
        {"$schema": "https://evil.example.com/meta.json"},
        # Relative to a remote $id: still a fetch.
        {"$id": "https://evil.example.com/root.json", "$ref": "other.json"},
        # Valid for Python's re but not for the validator's regex engine.
        {"properties": {"a": {"pattern": "a{,3}"}}},
    ],
)
def test_an_invalid_or_remote_schema_is_refused_and_nothing_changes(
    api: Api, full: str, schema: Any
) -> None:
    push(api, full, queue="jobs:s")
    call = api.request("PUT", "/queues/jobs:s/schema", {"schema": schema}, as_=full)
    assert call.status == 400 and call.body["errors"][0]["path"] == "/schema"
    assert api.post("/queues/jobs:s/jobs", {"data": {"anything": 1}}, as_=full).status == 201


def test_local_refs_work_and_removing_the_schema_lifts_it(api: Api, full: str) -> None:
    schema = {
        "$defs": {"id": {"type": "string", "format": "uuid"}},
        "type": "object",
        "properties": {"orderId": {"$ref": "#/$defs/id"}},
    }
    assert api.request("PUT", "/queues/jobs:s/schema", {"schema": schema}, as_=full).status == 200
    assert api.post("/queues/jobs:s/jobs", {"data": {"orderId": "nope"}}, as_=full).status == 422
    assert api.post("/queues/jobs:s/jobs", {"data": {"orderId": UUID}}, as_=full).status == 201
    assert api.request("DELETE", "/queues/jobs:s/schema", as_=full).body["schema"] is None
    assert api.post("/queues/jobs:s/jobs", {"data": {"orderId": "nope"}}, as_=full).status == 201
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"setSchema", "removeSchema"} <= actions


def test_the_admin_refuses_an_invalid_schema(api: Api, full: str) -> None:
    from queues.models import Queue

    push(api, full, queue="jobs:s")
    queue = Queue.objects.get(name="jobs:s")
    admin = superuser_client()
    form = {
        "subject_path": "userId",
        "json_schema": '{"$ref": "https://x.test/s"}',
        "_save": "Save",
    }
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", form).status_code == 200
    form["json_schema"] = '{"type": "object", "required": ["to"]}'
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", form).status_code == 302
    assert api.post("/queues/jobs:s/jobs", {"data": {}}, as_=full).status == 422


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("email", "user@example.com", "not-an-email"),
        ("uuid", UUID, "42"),
        ("uri", "https://example.com/a", "not a uri"),
        ("date-time", "2026-11-29T10:00:00Z", "yesterday"),
    ],
)
def test_formats_are_asserted_not_just_annotated(
    api: Api, full: str, fmt: str, good: str, bad: str
) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": fmt}}}
    assert api.request("PUT", "/queues/jobs:f/schema", {"schema": schema}, as_=full).status == 200
    assert api.post("/queues/jobs:f/jobs", {"data": {"v": good}}, as_=full).status == 201
    assert api.post("/queues/jobs:f/jobs", {"data": {"v": bad}}, as_=full).status == 422

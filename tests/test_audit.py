from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from django.db import IntegrityError

from compliance import audit
from compliance.models import AuditEvent
from queues.models import Job

from .personas import Personas
from .support import Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db


def _events() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("id"))


def test_an_allowed_call_writes_one_event_with_who_what_where(api: Api, personas: Personas) -> None:
    clear_audit()
    response = api.client.post(
        "/api/v1/queues/jobs:q/jobs",
        json.dumps({"data": {"card": "secret-value", "userId": "u1"}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {personas.producer}",
        HTTP_X_REQUEST_ID="req-123",
        REMOTE_ADDR="10.1.2.3",
    )
    [event] = _events()
    assert (event.action, event.outcome, event.status, event.queue) == ("push", "ok", 201, "jobs:q")
    assert event.job_ids == [response.json()["id"]]
    assert event.actor == "token:producer" and event.token_id is not None
    assert (event.client_ip, event.client_request_id) == ("10.1.2.3", "req-123")
    assert event.request_id == response["X-Request-ID"] != "req-123"  # ours, not the client's
    stored = json.dumps([event.details, event.job_ids, event.actor])
    assert "secret-value" not in stored and "u1" not in stored


@pytest.mark.parametrize(
    ("make_call", "status", "outcome"),
    [
        (
            lambda api, p, job: api.post("/queues/jobs:q/jobs", {"data": {}}, as_=None),
            401,
            "denied",
        ),
        (
            lambda api, p, job: api.post("/queues/jobs:q/jobs", {"data": {}}, as_="fq_bad"),
            401,
            "denied",
        ),
        (lambda api, p, job: api.post("/queues/jobs:q/pull", {}, as_=p.producer), 403, "denied"),
        (lambda api, p, job: api.get(f"/jobs/{job['id']}", as_=p.stranger), 404, "not_found"),
        (
            lambda api, p, job: api.post("/queues/jobs:q/jobs", {"data": 1}, as_=p.producer),
            400,
            "invalid",
        ),
        (
            lambda api, p, job: api.post("/queues/jobs:q/jobs", as_=p.producer, raw="{"),
            400,
            "invalid",
        ),
        (
            lambda api, p, job: api.post(
                f"/jobs/{job['id']}/ack", {"lease_id": str(uuid.uuid4())}, as_=p.worker
            ),
            409,
            "conflict",
        ),
        (
            lambda api, p, job: api.post(
                "/queues/jobs:q/jobs", as_=p.producer, raw="x", content_type="text/plain"
            ),
            415,
            "invalid",
        ),
    ],
)
def test_every_refused_call_writes_exactly_one_event(
    api: Api, personas: Personas, make_call: Any, status: int, outcome: str
) -> None:
    job = push(api, personas.admin, queue="jobs:q")
    clear_audit()
    call = make_call(api, personas, job)
    assert call.status == status
    [event] = _events()
    assert (event.status, event.outcome) == (status, outcome)


def test_a_denied_call_records_the_queue_and_the_token(api: Api, personas: Personas) -> None:
    clear_audit()
    api.post("/queues/jobs:q/pull", {}, as_=personas.producer)
    [event] = _events()
    assert (event.action, event.queue, event.actor) == ("pull", "jobs:q", "token:producer")


def test_one_event_per_batch_listing_its_job_ids(api: Api, personas: Personas) -> None:
    clear_audit()
    call = api.post(
        "/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}] * 20}, as_=personas.producer
    )
    [event] = _events()
    assert event.job_ids == [job["id"] for job in call.body["jobs"]]
    assert event.details == {"count": 20, "created": 20, "queue_created": True}
    clear_audit()
    api.post("/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}]}, as_=personas.producer)
    assert AuditEvent.objects.get().details == {"count": 1, "created": 1}


def test_field_errors_are_recorded_by_path_without_values(api: Api, personas: Personas) -> None:
    clear_audit()
    api.post("/queues/jobs:q/jobs", {"data": {}, "priority": "top-secret"}, as_=personas.producer)
    [event] = _events()
    assert event.details == {"code": "invalid_input", "paths": ["/priority"]}
    assert "top-secret" not in json.dumps(event.details)


def test_a_change_and_its_audit_event_commit_together(
    api: Api, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the database refuses the audit row, the push it describes must not happen
    (one statement on PostgreSQL, one transaction on SQLite)."""
    push(api, personas.producer, queue="jobs:q")  # the queue exists: the hot path
    Job.objects.all().delete()
    real = audit.audit_insert

    def refused_by_the_database(event: AuditEvent) -> tuple[str, list[Any]]:
        event.status = -1  # the status column's CHECK constraint refuses it
        return real(event)

    monkeypatch.setattr("queues.bulkinsert.audit_insert", refused_by_the_database)
    clear_audit()
    with pytest.raises(IntegrityError):
        api.post("/queues/jobs:q/jobs", {"data": {}}, as_=personas.producer)
    assert not Job.objects.exists()
    [event] = _events()  # the failure itself is still recorded, in its own transaction
    assert (event.status, event.outcome) == (500, "error")


def test_the_pull_event_lists_the_leased_jobs(api: Api, personas: Personas) -> None:
    pushed = push(api, personas.producer, queue="jobs:q")
    clear_audit()
    pull(api, personas.worker, queue="jobs:q")
    [event] = _events()
    assert event.job_ids == [pushed["id"]]


def test_each_event_is_logged_as_one_json_line_after_commit(
    api: Api,
    personas: Personas,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with caplog.at_level(logging.INFO, logger="flashq.audit"):
        caplog.handler.setLevel(logging.INFO)
        logging.getLogger("flashq.audit").addHandler(caplog.handler)
        with django_capture_on_commit_callbacks(execute=True):
            api.post("/queues/jobs:q/jobs", {"data": {"pii": "do-not-log"}}, as_=personas.producer)
        logging.getLogger("flashq.audit").removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "flashq.audit"]
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert (logged["action"], logged["status"], logged["actor"]) == ("push", 201, "token:producer")
    assert logged["persisted"] is True
    assert "do-not-log" not in lines[0]
    assert personas.producer not in lines[0]


def test_the_client_ip_comes_from_forwarded_for_only_via_a_trusted_proxy(
    api: Api, personas: Personas, settings: Any
) -> None:
    def ip_for(remote: str) -> str | None:
        clear_audit()
        api.client.get(
            "/api/v1/queues",
            HTTP_AUTHORIZATION=f"Bearer {personas.producer}",
            REMOTE_ADDR=remote,
            HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9",
        )
        return _events()[0].client_ip

    assert ip_for("198.51.100.7") == "198.51.100.7"  # no proxy configured: header ignored
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert ip_for("10.0.0.2") == "203.0.113.9"  # right-most untrusted hop
    assert ip_for("198.51.100.7") == "198.51.100.7"  # not a trusted proxy: ignored


@pytest.mark.parametrize("supplied", ["same-id", "x" * 65, "bad id\u00e9", ""])
def test_every_event_has_its_own_server_request_id_whatever_the_client_sends(
    api: Api, personas: Personas, supplied: str
) -> None:
    clear_audit()
    for _ in range(2):
        api.client.get(
            "/api/v1/queues",
            HTTP_AUTHORIZATION=f"Bearer {personas.producer}",
            HTTP_X_REQUEST_ID=supplied,
        )
    first, second = _events()
    assert first.request_id != second.request_id
    assert len(first.request_id) == 32
    kept = supplied if supplied == "same-id" else ""
    assert first.client_request_id == second.client_request_id == kept

"""Values Python's json accepts but no database should store are refused at the door
with a 400 and a path, on every route, and change nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import transaction

from compliance.models import AuditEvent
from queues import services
from queues.errors import JobNotFound
from queues.models import Job
from security.payloads import json_problem

from .support import SETUP, Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('{"data": {}, "tags": ["\\ud800"], "priority": 5}', "/tags/0"),
        ('{"data": {"name": "a\\u0000b"}}', "/data/name"),
        ('{"data": {"n": 1e400}}', "/"),
        ('{"data": {"\\udfff": 1}}', "/data"),
        ('{"data": {}, "key": "k\\u0000"}', "/key"),
    ],
)
def test_unstorable_values_are_400_with_their_path(
    api: Api, full: str, raw: str, path: str
) -> None:
    call = api.post("/queues/q/jobs", as_=full, raw=raw)
    assert call.status == 400, call.body
    assert call.body["errors"][0]["path"] == path
    assert not Job.objects.exists()


def test_nesting_is_capped(api: Api, full: str) -> None:
    def nested(depth: int) -> str:
        return '{"data": ' + '{"a": ' * depth + "1" + "}" * depth + "}"

    # A job's data: at most MAX_PAYLOAD_DEPTH (32) levels, else 413 naming where.
    assert api.post("/queues/q/jobs", as_=full, raw=nested(32)).status == 201
    deep = api.post("/queues/q/jobs", as_=full, raw=nested(33))
    assert deep.status == 413 and deep.body["errors"][0]["path"] == "/data" + "/a" * 32
    # Any body: deeper than MAX_DEPTH (64) is refused while parsing.
    call = api.post("/queues/q/jobs", as_=full, raw=nested(64))
    assert call.status == 400 and "nested" in call.body["errors"][0]["message"]


def test_an_unstorable_ack_result_is_refused_and_the_lease_kept(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    raw = json.dumps({"lease_id": job["lease_id"]})[:-1] + ', "result": {"x": "\\udfff"}}'
    assert api.post(f"/jobs/{job['id']}/ack", as_=full, raw=raw).status == 400
    assert Job.objects.get(id=job["id"]).state == "active"
    assert api.get(f"/jobs/{job['id']}", as_=full).status == 200


def test_json_problem_walks_iteratively() -> None:
    deep: list[object] = []
    cursor = deep
    for _ in range(10_000):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    assert json_problem(deep) is not None  # no RecursionError
    assert json_problem({"ok": [1, 2.5, "text", None, True]}) is None


def test_client_chosen_key_names_cannot_bloat_the_audit_trail(api: Api) -> None:
    from .support import make_token

    nobody = make_token("nobody", "nothing=push")
    item = {"k" * 100_000: 1, "id": str(uuid.uuid4()), "lease_id": str(uuid.uuid4())}
    clear_audit()
    assert api.post("/jobs/ack", {"jobs": [item] * 15}, as_=nobody).status == 400
    [event] = AuditEvent.objects.all()
    assert len(json.dumps(event.details)) < 10_000


def test_options_is_not_a_side_door(api: Api, full: str) -> None:
    clear_audit()
    call = api.request("OPTIONS", "/queues/q/jobs", as_=full)
    assert call.status == 405
    assert AuditEvent.objects.get().status == 405


def test_head_is_audited_as_the_read_it_is(api: Api, full: str) -> None:
    job = push(api, full)
    clear_audit()
    assert api.request("HEAD", f"/jobs/{job['id']}", as_=full).status == 200
    assert AuditEvent.objects.get().action == "getJob"


def test_a_job_deleted_mid_request_is_not_found_not_a_crash() -> None:
    for operation in (services.job_cancel, services.job_retry):
        with pytest.raises(JobNotFound), transaction.atomic():
            operation(job_id=uuid.uuid4(), actor=SETUP)
    with pytest.raises(JobNotFound), transaction.atomic():
        services.job_update(job_id=uuid.uuid4(), data={}, actor=SETUP)


def test_update_follows_the_subject_taken_from_data(api: Api, full: str) -> None:
    derived = push(api, full, data={"userId": "alice"})
    given = push(api, full, data={"userId": "alice"}, subject="case-7")
    for job in (derived, given):
        assert api.patch(f"/jobs/{job['id']}", {"data": {"userId": "bob"}}, as_=full).status == 200
    assert Job.objects.get(id=derived["id"]).subject == "bob"
    assert Job.objects.get(id=given["id"]).subject == "case-7"


def test_an_ipv6_zone_id_from_a_trusted_proxy_is_dropped(
    api: Api, full: str, settings: object
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]  # type: ignore[attr-defined]
    clear_audit()
    api.client.get(
        "/api/v1/queues",
        HTTP_AUTHORIZATION=f"Bearer {full}",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="fe80::1%" + "a" * 100,
    )
    assert AuditEvent.objects.get().client_ip == "fe80::1"


def test_an_escaped_backslash_before_u0000_is_ordinary_text(api: Api, full: str) -> None:
    call = api.post("/queues/q/jobs", as_=full, raw='{"data": {"path": "C:\\\\u0000"}}')
    assert call.status == 201
    assert Job.objects.get().data == {"path": "C:\\u0000"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {}, "key": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
        '{"data": {"k": "a\\u0000b"}}'.encode("utf-16"),  # not UTF-8 at all
    ],
)
def test_bodies_that_are_not_strict_utf8_are_refused(api: Api, full: str, body: bytes) -> None:
    response = api.client.post(
        "/api/v1/queues/q/jobs",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {full}",
    )
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_a_nul_in_a_query_parameter_name_is_400_and_still_audited(api: Api, full: str) -> None:
    push(api, full)
    clear_audit()
    assert api.get("/queues/jobs:q/jobs?%00=1", as_=full).status == 400
    [event] = AuditEvent.objects.all()
    assert "\x00" not in json.dumps(event.details)


def test_a_chunked_body_is_411_not_silently_empty(api: Api, full: str) -> None:
    push(api, full)
    response = api.client.post(
        "/api/v1/queues/jobs:q/pull",
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {full}",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
    )
    assert response.status_code == 411
    assert Job.objects.get().state == "waiting"


@pytest.mark.parametrize("wait", ["5", True, "nan"])
def test_wait_must_be_a_number(api: Api, full: str, wait: object) -> None:
    assert api.post("/queues/q/pull", {"wait": wait}, as_=full).status == 400


def test_an_unexpected_failure_is_a_problem_500_and_audited(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "job_push", broken)
    clear_audit()
    client = api.client
    client.raise_request_exception = False
    response = client.post(
        "/api/v1/queues/q/jobs",
        json.dumps({"data": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {full}",
    )
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert "disk on fire" not in response.content.decode()
    assert AuditEvent.objects.get().outcome == "error"

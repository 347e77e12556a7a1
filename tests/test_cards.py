"""The card-number guard: real test card numbers of each brand, however written, are
refused with 422 and the field path, nothing is stored, and the trail holds at most the
first 6 and last 4 digits. Look-alikes (UUIDs, timestamps, phone and order numbers)
pass."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from compliance.models import AuditEvent
from queues.models import Job, JobState, Queue
from security.cards import card_numbers_in, luhn_valid

from .personas import superuser_client
from .support import Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db

TEST_CARDS = {
    "visa": "4111111111111111",
    "visa-13": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard-2": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "jcb": "3530111333300000",
    "diners": "30569309025904",
    "unionpay": "6200000000000005",
    "maestro": "6759649826438453",
}


def _spaced(digits: str) -> str:
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


# Shapes that hold no card number, in data and in every string kept in clear: digits
# touching hex letters (hashes and undashed UUIDs used as idempotency keys), decimals,
# timestamps, versions, dates and addresses joined by dots, slashes or underscores.
LOOK_ALIKES = [
    "deadbeef4111111111111111cafe",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "a4111111111111111f",
    "550e8400e29b41d4a716446655440000",
    "2.718281828459045",
    "51.5073509000000",
    "1732890000.123456",
    "v2.4.1-4111",
    "build_2026_11_29_0930",
    "reports/2026/11/29/page-2",
    "192.168.100.200:8080",
    "1234.5678.9012.3456",
]


@pytest.mark.parametrize("brand", TEST_CARDS)
@pytest.mark.parametrize(
    ("shape", "path"),
    [
        (lambda n: {"card": n}, "/data/card"),
        (lambda n: {"card": _spaced(n)}, "/data/card"),
        (lambda n: {"card": _spaced(n).replace(" ", "-")}, "/data/card"),
        (lambda n: {"order": {"payment": [{"note": f"paid with {n} today"}]}}, None),
        (lambda n: {"card": int(n)}, "/data/card"),
        (lambda n: {n: "as a key"}, None),
        (lambda n: {"card": _spaced(n).replace(" ", ".")}, "/data/card"),
        (lambda n: {"card": _spaced(n).replace(" ", "_")}, "/data/card"),
        (lambda n: {"card": _spaced(n).replace(" ", "/")}, "/data/card"),
        (lambda n: {"note": f"order{n}"}, "/data/note"),
    ],
    ids=[
        "plain",
        "spaced",
        "dashed",
        "nested-in-text",
        "integer",
        "key",
        "dotted",
        "underscored",
        "slashed",
        "glued-to-a-word",
    ],
)
def test_a_card_number_is_refused_with_its_path_and_never_stored(
    api: Api, full: str, brand: str, shape: Any, path: str | None, caplog: Any
) -> None:
    number = TEST_CARDS[brand]
    assert luhn_valid(number)
    clear_audit()
    logging.getLogger("flashq.audit").addHandler(caplog.handler)
    try:
        call = api.post("/queues/q/jobs", {"data": shape(number)}, as_=full)
    finally:
        logging.getLogger("flashq.audit").removeHandler(caplog.handler)
    assert call.status == 422, call.body
    assert call.body["code"] == "card-number-detected"
    [error] = call.body["errors"]
    if path:
        assert error["path"] == path
    assert error["path"].startswith("/data")
    assert number not in json.dumps(call.body)
    assert not Job.objects.exists()
    event = AuditEvent.objects.get()
    assert event.details["cards"] == f"{number[:6]}{'*' * (len(number) - 10)}{number[-4:]}"
    logged = " ".join(r.getMessage() for r in caplog.records)
    for stored in (json.dumps(event.details), logged):
        assert number not in stored
    assert re.fullmatch(r"\d{6}\*+\d{4}", event.details["cards"])


@pytest.mark.parametrize(
    "field", ["cvv", "CVC2", "card_cvv", "billing-track2", "pin", "PinBlock", "securityCode"]
)
def test_a_card_secret_field_with_a_value_is_refused(api: Api, full: str, field: str) -> None:
    call = api.post("/queues/q/jobs", {"data": {"payment": {field: "123"}}}, as_=full)
    assert call.status == 422
    assert call.body["errors"][0]["path"] == f"/data/payment/{field}"
    assert api.post("/queues/q/jobs", {"data": {"payment": {field: None}}}, as_=full).status == 201


@pytest.mark.parametrize(
    "value",
    [
        "123e4567-e89b-12d3-a456-426614174000",
        "550e8400-e29b-41d4-a716-446655440000",
        1732890000000,
        "1732890000000",
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "ORD-2026-000123456789",
        "deadbeef4111111111111111cafe",
        "41111111111111112",  # 17 digits: not a Visa length
        "4111111111111112",  # Luhn fails
        "1234 5678 9012 3456",  # no brand starts with 1
        "invoice 2026-11-29 total 149.99",
        *LOOK_ALIKES,
    ],
)
def test_look_alikes_pass(api: Api, full: str, value: Any) -> None:
    assert api.post("/queues/q/jobs", {"data": {"v": value}}, as_=full).status == 201


def test_every_card_in_a_batch_is_named_and_nothing_is_stored(api: Api, full: str) -> None:
    jobs = [
        {"data": {}},
        {"data": {"c": TEST_CARDS["amex"]}},
        {"data": {"d": [TEST_CARDS["visa"]]}},
    ]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 422
    assert {e["path"] for e in call.body["errors"]} == {"/jobs/1/data/c", "/jobs/2/data/d/0"}
    assert not Job.objects.exists()


def test_results_errors_and_updates_are_guarded_too(api: Api, full: str) -> None:
    job = push(api, full, queue="q")
    patch = api.patch(f"/jobs/{job['id']}", {"data": {"c": TEST_CARDS["visa"]}}, as_=full)
    assert patch.status == 422 and Job.objects.get(id=job["id"]).data == {"n": 1}
    [leased] = pull(api, full, queue="q")
    lease = {"lease_id": leased["lease_id"]}
    ack = {**lease, "result": {"charged": TEST_CARDS["mastercard"]}}
    assert api.post(f"/jobs/{job['id']}/ack", ack, as_=full).status == 422
    fail = {**lease, "error": f"declined: {_spaced(TEST_CARDS['visa'])}"}
    assert api.post(f"/jobs/{job['id']}/fail", fail, as_=full).status == 422
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.result, stored.errors) == (JobState.ACTIVE, None, [])
    batch = {"jobs": [{"id": job["id"], **lease, "result": {"cvv": "999"}}]}
    call = api.post("/jobs/ack", batch, as_=full)
    assert call.status == 422 and call.body["errors"][0]["path"] == "/jobs/0/result/cvv"
    assert (
        api.post(f"/jobs/{job['id']}/ack", {**lease, "result": {"ok": 1}}, as_=full).status == 200
    )


def test_the_scanner_finds_each_number_once() -> None:
    text = f"first {TEST_CARDS['visa']}, then {_spaced(TEST_CARDS['amex'])}."
    assert card_numbers_in(text) == [TEST_CARDS["visa"], TEST_CARDS["amex"]]


@pytest.mark.parametrize("field", ["spin", "shipping", "soundtrack", "pinned", "tracking"])
def test_names_that_only_resemble_card_secrets_pass(api: Api, full: str, field: str) -> None:
    assert api.post("/queues/q/jobs", {"data": {field: "123"}}, as_=full).status == 201


def test_a_queue_allow_list_lets_known_false_positives_through(api: Api, full: str) -> None:
    push(api, full, queue="orders")
    queue = Queue.objects.get(name="orders")
    admin = superuser_client()
    form = {"subject_path": "userId", "card_allowlist": '["/order/reference"]', "_save": "Save"}
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", form).status_code == 302
    event = AuditEvent.objects.filter(action="queue.update").get()
    assert event.details["card_allowlist"]["to"] == ["/order/reference"]
    reference = {"order": {"reference": TEST_CARDS["visa"]}}
    assert api.post("/queues/orders/jobs", {"data": reference}, as_=full).status == 201
    batch = {"jobs": [{"data": reference}, {"data": {"order": {"note": TEST_CARDS["amex"]}}}]}
    call = api.post("/queues/orders/jobs/batch", batch, as_=full)
    assert call.status == 422
    assert [e["path"] for e in call.body["errors"]] == ["/jobs/1/data/order/note"]
    secret = {"order": {"reference": {"cvv": "123"}}}
    assert api.post("/queues/orders/jobs", {"data": secret}, as_=full).status == 422
    # Other queues are not affected.
    assert api.post("/queues/other/jobs", {"data": reference}, as_=full).status == 422
    bad = {**form, "card_allowlist": '["order/reference"]'}
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", bad).status_code == 200


# -- every client-supplied string that is stored -------------------------------------

VISA = TEST_CARDS["visa"]
MASTERCARD = TEST_CARDS["mastercard"]


def _kept_nowhere(number: str) -> None:
    """Neither the number nor its digits grouped as sent are in any job, queue or
    audit row (the trail may hold BIN and last 4 only)."""
    rows = [
        list(Job.objects.values("key", "subject", "tags", "progress_message", "error_code")),
        list(Queue.objects.values_list("name", flat=True)),
        list(AuditEvent.objects.values()),
    ]
    stored = re.sub(r"[ ._/:-]", "", json.dumps(rows, default=str))
    assert number not in stored


def _refused(call: Any, *paths: str) -> None:
    assert call.status == 422, call.body
    assert call.body["code"] == "card-number-detected"
    assert sorted(error["path"] for error in call.body["errors"]) == sorted(paths)
    assert VISA not in json.dumps(call.body) and MASTERCARD not in json.dumps(call.body)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"key": VISA}, "/key"),
        ({"key": f"order-{VISA}"}, "/key"),
        ({"subject": _spaced(VISA)}, "/subject"),
        ({"tags": ["vip", "eu", MASTERCARD]}, "/tags/2"),
        ({"tags": [_spaced(MASTERCARD).replace(" ", "-")]}, "/tags/0"),
    ],
    ids=["key", "key-in-text", "subject-spaced", "tag", "tag-dashed"],
)
def test_a_card_number_in_a_key_subject_or_tag_is_refused_and_nothing_is_kept(
    api: Api, full: str, fields: dict[str, Any], path: str
) -> None:
    clear_audit()
    call = api.post("/queues/q/jobs", {"data": {"n": 1}, **fields}, as_=full)
    _refused(call, path)
    assert not Job.objects.exists() and not Queue.objects.filter(name="q").exists()
    event = AuditEvent.objects.get()
    assert (event.status, event.details["paths"]) == (422, [path])
    assert re.fullmatch(r"\d{6}\*+\d{4}", event.details["cards"])
    _kept_nowhere(VISA)
    _kept_nowhere(MASTERCARD)


def test_a_batch_names_each_card_in_keys_subjects_and_tags(api: Api, full: str) -> None:
    jobs = [
        {"data": {}, "key": "k-0", "subject": "u-0", "tags": ["a"]},
        {"data": {}, "subject": VISA},
        {"data": {}, "key": MASTERCARD},
        {"data": {"c": VISA}, "tags": ["a", f"card {VISA}"]},
    ]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    _refused(call, "/jobs/1/subject", "/jobs/2/key", "/jobs/3/data/c", "/jobs/3/tags/1")
    assert not Job.objects.exists()
    _kept_nowhere(VISA)
    _kept_nowhere(MASTERCARD)


def test_an_allow_list_covers_data_only_never_a_key(api: Api, full: str) -> None:
    push(api, full, queue="orders")
    Queue.objects.filter(name="orders").update(card_allowlist=["/key", "/"])
    call = api.post("/queues/orders/jobs", {"data": {}, "key": VISA}, as_=full)
    _refused(call, "/key")


def test_a_card_number_in_a_progress_message_is_refused_and_not_kept(api: Api, full: str) -> None:
    job = push(api, full, queue="q")
    [leased] = pull(api, full, queue="q", lease=60)
    before = Job.objects.get(id=job["id"]).lease_expires_at
    body = {"lease_id": leased["lease_id"], "progress": 50, "message": f"charging {VISA}"}
    _refused(api.post(f"/jobs/{job['id']}/progress", body, as_=full), "/message")
    stored = Job.objects.get(id=job["id"])
    assert (stored.progress, stored.progress_message, stored.lease_expires_at) == (0, "", before)
    _kept_nowhere(VISA)


def test_a_card_number_in_a_failure_code_is_refused_and_not_kept(api: Api, full: str) -> None:
    job = push(api, full, queue="q")
    [leased] = pull(api, full, queue="q")
    body = {"lease_id": leased["lease_id"], "error": "declined", "code": f"card.{MASTERCARD}"}
    _refused(api.post(f"/jobs/{job['id']}/fail", body, as_=full), "/code")
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.errors, stored.error_code) == (JobState.ACTIVE, [], "")
    _kept_nowhere(MASTERCARD)


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "/jobs", {"data": {}}),
        ("POST", "/jobs/batch", {"jobs": [{"data": {}}]}),
        ("PUT", "/rate-limit", {"max": 5, "duration_ms": 1000}),
        ("PUT", "/concurrency", {"max": 2}),
        ("PUT", "/group-concurrency", {"max": 2}),
        ("GET", "/jobs", None),
        ("POST", "/clean", {"grace_ms": 0}),
    ],
)
def test_a_queue_name_holding_a_card_number_is_refused_on_every_route(
    api: Api, full: str, method: str, route: str, body: Any
) -> None:
    clear_audit()
    call = api.request(method, f"/queues/pay-{VISA}{route}", body, as_=full)
    _refused(call, "/queue")
    assert not Queue.objects.exists()
    event = AuditEvent.objects.get()
    assert (event.status, event.queue, event.details["paths"]) == (422, "", ["/queue"])
    _kept_nowhere(VISA)


def test_a_queue_name_holding_a_card_number_is_refused_by_the_model() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="card number"):
        Queue(name=f"pay.{MASTERCARD}").full_clean()
    Queue(name="orders-2026-11-29").full_clean()


def test_a_card_number_in_a_queue_schema_is_refused(api: Api, full: str) -> None:
    schema = {"type": "object", "properties": {"card": {"const": VISA}}}
    call = api.request("PUT", "/queues/q/schema", {"schema": schema}, as_=full)
    _refused(call, "/schema/properties/card/const")
    _kept_nowhere(VISA)


def _with_request_id(api: Api, method: str, path: str, token: str | None, request_id: str) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    body = json.dumps({"data": {"n": 1}}) if method == "post" else None
    return getattr(api.client, method)(
        f"/api/v1{path}",
        body,
        content_type="application/json",
        HTTP_X_REQUEST_ID=request_id,
        **headers,
    )


@pytest.mark.parametrize("request_id", [VISA, _spaced(MASTERCARD).replace(" ", "-")])
def test_a_card_number_in_x_request_id_is_refused_audited_and_never_echoed(
    api: Api, full: str, request_id: str
) -> None:
    clear_audit()
    response = _with_request_id(api, "post", "/queues/q/jobs", full, request_id)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "card-number-detected"
    assert [error["path"] for error in body["errors"]] == ["/headers/X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert request_id not in response.content.decode()
    assert not Job.objects.exists() and not Queue.objects.exists()
    event = AuditEvent.objects.get()
    assert (event.action, event.status, event.actor) == ("push", 422, "token:full")
    assert event.client_request_id == ""
    assert event.details["paths"] == ["/headers/X-Request-ID"]
    assert re.fullmatch(r"\d{6}\*+\d{4}", event.details["cards"])
    _kept_nowhere(VISA)
    _kept_nowhere(MASTERCARD)


def test_a_card_number_in_x_request_id_is_kept_by_no_route(api: Api, full: str) -> None:
    job = push(api, full, queue="q")
    clear_audit()
    assert _with_request_id(api, "get", f"/jobs/{job['id']}", full, VISA).status_code == 422
    assert _with_request_id(api, "get", "/queues", None, VISA).status_code == 401
    admin = superuser_client()
    assert admin.get("/admin/queues/job/", HTTP_X_REQUEST_ID=VISA).status_code == 200
    assert AuditEvent.objects.count() >= 2
    _kept_nowhere(VISA)
    # A safe id is still kept for correlation.
    assert _with_request_id(api, "get", "/queues", full, "req-4111").status_code == 200
    assert AuditEvent.objects.filter(client_request_id="req-4111").exists()


# -- widened shapes (review of issue 17): glued to a word, joined by . _ / : ----------

WIDENED = {
    "glued-to-a-word": lambda n: f"order{n}",  # r is not a hex letter
    "dotted": lambda n: _spaced(n).replace(" ", "."),
    "underscored": lambda n: _spaced(n).replace(" ", "_"),
    "slashed": lambda n: _spaced(n).replace(" ", "/"),
    "colons": lambda n: _spaced(n).replace(" ", ":"),
}
# The characters fail's code, a queue name and a kept X-Request-ID may hold.
NAME_SAFE = ["glued-to-a-word", "dotted", "underscored"]


@pytest.mark.parametrize("shape", WIDENED)
@pytest.mark.parametrize(
    ("field", "path"),
    [("key", "/key"), ("subject", "/subject"), ("tags", "/tags/1")],
)
def test_a_widened_shape_in_a_key_subject_or_tag_is_refused(
    api: Api, full: str, shape: str, field: str, path: str
) -> None:
    value = WIDENED[shape](VISA)
    fields = {field: ["vip", value] if field == "tags" else value}
    clear_audit()
    _refused(api.post("/queues/q/jobs", {"data": {"n": 1}, **fields}, as_=full), path)
    batch = {"jobs": [{"data": {}}, {"data": {}, **fields}]}
    _refused(api.post("/queues/q/jobs/batch", batch, as_=full), f"/jobs/1{path}")
    assert not Job.objects.exists() and not Queue.objects.exists()
    assert [e.details["cards"] for e in AuditEvent.objects.all()] == ["411111******1111"] * 2
    _kept_nowhere(VISA)


@pytest.mark.parametrize("shape", WIDENED)
def test_a_widened_shape_in_a_progress_message_is_refused(api: Api, full: str, shape: str) -> None:
    job = push(api, full, queue="q")
    [leased] = pull(api, full, queue="q", lease=60)
    body = {"lease_id": leased["lease_id"], "progress": 5, "message": WIDENED[shape](VISA)}
    _refused(api.post(f"/jobs/{job['id']}/progress", body, as_=full), "/message")
    assert Job.objects.get(id=job["id"]).progress_message == ""
    _kept_nowhere(VISA)


@pytest.mark.parametrize("shape", NAME_SAFE)
def test_a_widened_shape_in_a_failure_code_is_refused(api: Api, full: str, shape: str) -> None:
    job = push(api, full, queue="q")
    [leased] = pull(api, full, queue="q")
    body = {"lease_id": leased["lease_id"], "error": "declined", "code": WIDENED[shape](VISA)}
    _refused(api.post(f"/jobs/{job['id']}/fail", body, as_=full), "/code")
    assert Job.objects.get(id=job["id"]).error_code == ""
    _kept_nowhere(VISA)


@pytest.mark.parametrize("shape", [*NAME_SAFE, "colons"])
def test_a_widened_shape_in_a_queue_name_is_refused(api: Api, full: str, shape: str) -> None:
    name = f"pay:{WIDENED[shape](VISA)}"
    _refused(api.post(f"/queues/{name}/jobs", {"data": {}}, as_=full), "/queue")
    assert not Queue.objects.exists()
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="card number"):
        Queue(name=name).full_clean()
    _kept_nowhere(VISA)


@pytest.mark.parametrize("shape", WIDENED)
def test_a_widened_shape_in_x_request_id_is_refused_or_dropped(
    api: Api, full: str, shape: str
) -> None:
    request_id = WIDENED[shape](VISA)
    clear_audit()
    response = _with_request_id(api, "post", "/queues/q/jobs", full, request_id)
    if shape in NAME_SAFE:  # kept-safe characters: checked, and refused
        assert response.status_code == 422
        assert [e["path"] for e in response.json()["errors"]] == ["/headers/X-Request-ID"]
    else:  # not a safe request id at all: never kept
        assert response.status_code == 201
    assert AuditEvent.objects.get().client_request_id == ""
    _kept_nowhere(VISA)


@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_look_alikes_are_kept_in_every_string_field(api: Api, full: str, value: str) -> None:
    """Hex hashes and UUIDs as idempotency keys, versions, dates and decimals: no false
    positive in the fields kept in clear."""
    job = push(api, full, queue="q", key=value, subject=value, tags=[value])
    stored = Job.objects.get(id=job["id"])
    assert (stored.key, stored.subject, stored.tags) == (value, value, [value])
    [leased] = pull(api, full, queue="q", lease=60)
    body = {"lease_id": leased["lease_id"], "progress": 5, "message": value}
    assert api.post(f"/jobs/{job['id']}/progress", body, as_=full).status == 200
    if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        clear_audit()
        assert _with_request_id(api, "get", "/queues", full, value).status_code == 200
        assert AuditEvent.objects.filter(client_request_id=value).exists()


def test_an_allow_listed_card_number_never_becomes_the_plaintext_subject(
    api: Api, full: str
) -> None:
    """Reported: with the allow-list covering the queue's subject_path, the number was
    copied into the subject column, in clear, shown to every getJob holder."""
    push(api, full, queue="orders")
    Queue.objects.filter(name="orders").update(
        subject_path="order.ref", card_allowlist=["/order/ref"]
    )
    clear_audit()
    call = api.post("/queues/orders/jobs", {"data": {"order": {"ref": VISA}}}, as_=full)
    _refused(call, "/data/order/ref")
    assert "stored as the subject" in call.body["errors"][0]["message"]
    batch = {"jobs": [{"data": {}}, {"data": {"order": {"ref": int(MASTERCARD)}}}]}
    _refused(api.post("/queues/orders/jobs/batch", batch, as_=full), "/jobs/1/data/order/ref")
    assert Job.objects.count() == 1
    assert AuditEvent.objects.filter(status=422).count() == 2
    _kept_nowhere(VISA)
    _kept_nowhere(MASTERCARD)
    # The allow-list still lets the number stay in the (encrypted) data when the subject
    # is given, and an update that would derive the subject from it is refused too.
    job = push(api, full, queue="orders", data={"order": {"ref": VISA}}, subject="u-1")
    assert Job.objects.get(id=job["id"]).subject == "u-1"
    derived = push(api, full, queue="orders", data={"order": {"ref": "A-1"}})
    assert Job.objects.get(id=derived["id"]).subject == "A-1"
    update = api.patch(f"/jobs/{derived['id']}", {"data": {"order": {"ref": VISA}}}, as_=full)
    _refused(update, "/data/order/ref")
    assert Job.objects.get(id=derived["id"]).subject == "A-1"


@pytest.mark.parametrize("shape", WIDENED)
def test_a_widened_shape_in_a_result_or_an_error_is_refused(
    api: Api, full: str, shape: str
) -> None:
    value = WIDENED[shape](VISA)
    job = push(api, full, queue="q")
    [leased] = pull(api, full, queue="q")
    lease = {"lease_id": leased["lease_id"]}
    ack = api.post(f"/jobs/{job['id']}/ack", {**lease, "result": {"note": value}}, as_=full)
    _refused(ack, "/result/note")
    _refused(api.post(f"/jobs/{job['id']}/fail", {**lease, "error": value}, as_=full), "/error")
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.result, stored.errors) == (JobState.ACTIVE, None, [])

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
from queues.models import Job, JobState
from security.cards import card_numbers_in, luhn_valid

from .support import Api, clear_audit, pull, push, superuser_client

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
    ],
    ids=["plain", "spaced", "dashed", "nested-in-text", "integer", "key"],
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
    from queues.models import Queue

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

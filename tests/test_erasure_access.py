"""POST /api/v1/compliance/erasures acts only where its token may erase. The verb
``erase`` is granted only by name and decided per queue: queues the token may not erase
are neither searched, counted, erased nor described; those it can see are listed as
``skipped`` (as clean does), those it cannot see are not named at all (as listQueues
does). Reported: a token with ``allow *=admin`` and ``deny b:*=*`` erased tenant B's
jobs, and its dry runs said which of B's queues and fields hold data about a person.
Also: the request body is strict (``"subject": 0`` ran a dry run for the subject "0")."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent, ErasureRequest
from queues import services
from queues.models import Job
from security.masking import pseudonym

from .support import SETUP, Api, make_token, push

pytestmark = pytest.mark.django_db

URL = "/api/v1/compliance/erasures"
SUBJECT = "u-tenant-4711"
PERSON = {"userId": SUBJECT, "email": "anna@example.com"}


def _tenants(api: Api) -> dict[str, str]:
    """The same person's jobs in tenant A's and tenant B's queues (one of B's under
    legal hold), and a queue of neither."""
    setup = make_token("tenants-setup", "*=*,admin")
    jobs = {
        queue: push(api, setup, queue=queue, data={**PERSON, "q": queue})["id"]
        for queue in ("a:mail", "a:crm", "b:mail", "b:billing", "c:misc")
    }
    services.queue_set_legal_hold(name="b:billing", hold=True, reason="litigation", actor=SETUP)
    return jobs


def _stored() -> dict[str, Any]:
    return {str(job.id): (job.data, job.subject, job.state) for job in Job.objects.all()}


def _erasure_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="gdpr.").order_by("id"))


@pytest.mark.parametrize(
    ("allow", "deny"),
    [
        (("*=admin",), ("b:*=*",)),  # the reported token
        (("*=*,admin",), ("b:*=*",)),
        (("*=*",), ()),  # * never implies erase
        (("*=*,admin,reveal,metrics",), ()),
        (("*=erase",), ("*=*",)),  # a deny of * denies erase too
    ],
)
def test_a_token_without_erase_on_any_queue_is_refused_and_nothing_changes(
    api: Api, allow: tuple[str, ...], deny: tuple[str, ...]
) -> None:
    _tenants(api)
    token = make_token("tenant-a-admin", *allow, deny=deny)
    before, events = _stored(), AuditEvent.objects.count()
    for body in ({"subject": SUBJECT}, {"subject": SUBJECT, "execute": True, "reason": "DSR"}):
        call = api.post(URL, body, as_=token)
        assert call.status == 403, call.body
        assert "b:" not in str(call.body) and "a:" not in str(call.body)
    assert _stored() == before and not ErasureRequest.objects.exists()
    refusals = list(AuditEvent.objects.order_by("id")[events:])
    assert [(e.action, e.outcome, e.status, e.actor) for e in refusals] == [
        ("gdpr.erase", "denied", 403, "token:tenant-a-admin")
    ] * 2


def test_erase_on_tenant_a_erases_in_a_only_and_says_nothing_of_b(api: Api) -> None:
    jobs = _tenants(api)
    token = make_token("tenant-a-dsr", "a:*=erase", deny=("b:*=*",))
    before = _stored()
    preview = api.post(URL, {"subject": SUBJECT}, as_=token)
    assert preview.status == 200, preview.body
    assert preview.body["counts"] == {"a:crm": {"waiting": 1}, "a:mail": {"waiting": 1}}
    assert set(preview.body["redacted_fields"]) == {"a:crm", "a:mail"}
    assert (preview.body["total"], preview.body["held"]) == (2, [])
    # It cannot see b:* or c:* at all (listQueues does not name them either).
    assert preview.body["skipped"] == []
    assert "b:" not in str(preview.body) and "c:" not in str(preview.body)
    assert _stored() == before
    body = {"subject": SUBJECT, "execute": True, "reason": "DSR 1"}
    done = api.post(URL, body, as_=token)
    assert done.status == 200 and done.body["total"] == 2
    after = _stored()
    for queue in ("b:mail", "b:billing", "c:misc"):
        assert after[jobs[queue]] == before[jobs[queue]], queue
    for queue in ("a:mail", "a:crm"):
        assert after[jobs[queue]][1] is None and SUBJECT not in repr(after[jobs[queue]])
    receipt = ErasureRequest.objects.get()
    assert receipt.counts == done.body["counts"] and receipt.held == []
    assert receipt.skipped == ["b:billing", "b:mail", "c:misc"]
    preview_event, erase_event = _erasure_events()
    for event in (preview_event, erase_event):
        assert "b:mail" not in repr(event.details["counts"])
        assert {str(i) for i in event.job_ids} == {jobs["a:mail"], jobs["a:crm"]}
        assert event.details["subject"] == pseudonym(SUBJECT)


def test_queues_it_may_see_but_not_erase_are_listed_as_skipped_and_not_described(
    api: Api,
) -> None:
    jobs = _tenants(api)
    token = make_token("tenant-a-dsr", "a:*=erase", "*=push", deny=("c:*=*",))
    listed = api.get("/queues", as_=token)
    assert {q["name"] for q in listed.body["queues"]} == {"a:crm", "a:mail", "b:billing", "b:mail"}
    before = _stored()
    body = {"subject": SUBJECT, "execute": True, "reason": "DSR 2"}
    done = api.post(URL, body, as_=token)
    assert done.status == 200, done.body
    assert done.body["skipped"] == ["b:billing", "b:mail"]
    assert set(done.body["counts"]) == set(done.body["redacted_fields"]) == {"a:crm", "a:mail"}
    # b:billing is under legal hold and holds a job about the subject; that is B's to know.
    assert done.body["held"] == [] and done.body["total"] == 2
    after = _stored()
    assert all(after[jobs[q]] == before[jobs[q]] for q in ("b:mail", "b:billing", "c:misc"))


def test_erase_is_granted_only_by_name_and_the_command_still_reaches_every_queue(
    api: Api,
) -> None:
    from io import StringIO

    from django.core.management import call_command

    _tenants(api)
    everything = make_token("dsr-everywhere", "*=erase")
    preview = api.post(URL, {"subject": SUBJECT}, as_=everything)
    assert preview.status == 200 and preview.body["total"] == 4
    assert preview.body["held"] == ["b:billing"] and preview.body["skipped"] == []
    out = StringIO()
    call_command("gdpr_erase", SUBJECT, stdout=out)
    assert "Dry run: 4 job(s)" in out.getvalue()


NOT_A_SUBJECT = [0, 1, -1, 4711, 1.5, True, False, None, [], [SUBJECT], {}, {"id": SUBJECT}, ""]


@pytest.mark.parametrize("subject", NOT_A_SUBJECT, ids=repr)
def test_a_subject_that_is_not_a_non_empty_string_is_a_400_naming_it(
    api: Api, subject: object
) -> None:
    """Found by fuzzing the schema: "subject": 0 was a dry run for the subject "0"."""
    setup = make_token("setup", "*=*")
    push(api, setup, queue="a:mail", data={"userId": "0"})
    token = make_token("dsr", "*=erase")
    before, events = _stored(), AuditEvent.objects.count()
    for execute in (False, True):
        body = {"subject": subject, "execute": execute, "reason": "DSR"}
        call = api.post(URL, body, as_=token)
        assert call.status == 400, call.body
        assert call.headers["Content-Type"] == "application/problem+json"
        assert [error["path"] for error in call.body["errors"]] == ["/subject"]
    assert _stored() == before and not ErasureRequest.objects.exists()
    refusals = AuditEvent.objects.order_by("id")[events:]
    assert [(e.action, e.status) for e in refusals] == [("gdpr.erase", 400)] * 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", 0),
        ("mode", ["redact"]),
        ("mode", "shred"),
        ("mode", None),
        ("reason", 5),
        ("reason", ["DSR"]),
        ("reason", None),
        ("execute", "yes"),
        ("execute", 1),
        ("execute", None),
        ("unknown", 1),
    ],
)
def test_the_other_fields_are_as_strict(api: Api, field: str, value: object) -> None:
    push(api, make_token("setup", "*=*"), queue="a:mail", data={"userId": SUBJECT})
    token = make_token("dsr", "*=erase")
    before = _stored()
    body = {"subject": SUBJECT, "execute": True, "reason": "DSR", field: value}
    call = api.post(URL, body, as_=token)
    assert call.status == 400, call.body
    assert [error["path"] for error in call.body["errors"]] == [f"/{field}"]
    assert _stored() == before and not ErasureRequest.objects.exists()


def test_the_schema_says_erase_per_queue_skipped_and_a_string_subject(api: Api) -> None:
    response = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    operation = schema["paths"][URL]["post"]
    for words in ("`erase`", "per queue", "`skipped`", "403", "`other_stores`"):
        assert words in operation["description"], words
    components = schema["components"]["schemas"]
    subject = components["ErasureInRequest"]["properties"]["subject"]
    assert (subject["type"], subject["minLength"], subject["maxLength"]) == ("string", 1, 255)
    assert "subject" in components["ErasureInRequest"]["required"]
    out = components["ErasureOut"]["properties"]
    assert {"skipped", "other_stores", "held", "counts"} <= set(out)
    assert "elsewhere" not in out

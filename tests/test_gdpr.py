"""GDPR erasure: a dry run that changes nothing, redaction and deletion of every job
about the subject (by its subject column and by the queue's subject_path in the data),
active jobs whose worker cannot write personal data back, legal holds, a receipt with
no personal data, idempotency, and the API route. After an executed erasure a raw
search of every table (and on PostgreSQL a pg_dump) finds none of the subject's data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance.erasure import OTHER_STORES, REDACTED, ErasureRefused, subject_erase
from compliance.models import AuditEvent, ErasureRequest
from queues import services
from queues.models import Job, JobState, Queue
from security.masking import pseudonym

from .personas import make_full_token
from .support import SETUP, Api, make_token, postgres_only, pull, push
from .test_encryption import _every_stored_byte

pytestmark = pytest.mark.django_db

SUBJECT, EMAIL, NAME = "u-4711", "anna.example@example.com", "Anna Beispiel"
PERSON = {"userId": SUBJECT, "email": EMAIL, "name": NAME}


def _world(api: Api, token: str) -> dict[str, Any]:
    """Jobs about the subject in several queues and states, and one about someone else."""
    waiting = push(
        api, token, queue="mail", data={**PERSON, "n": 1}, key=f"welcome-{SUBJECT}", tags=[SUBJECT]
    )
    active = push(api, token, queue="mail", data={**PERSON, "n": 2})
    done = push(api, token, queue="billing", data={"userId": SUBJECT, "amount": 5})
    named = push(api, token, queue="crm", data={"profile": {"name": NAME}}, subject=SUBJECT)
    other = push(api, token, queue="mail", data={"userId": "u-1", "email": "x@example.com"})
    [lease] = [job for job in pull(api, token, queue="billing")]
    api.post(
        f"/jobs/{done['id']}/ack",
        {"lease_id": lease["lease_id"], "result": {"receipt_to": {"email": EMAIL}}},
        as_=token,
    )
    leased = pull(api, token, queue="mail", count=2)
    active_lease = next(job["lease_id"] for job in leased if job["id"] == active["id"])
    waiting_lease = next(job["lease_id"] for job in leased if job["id"] == waiting["id"])
    api.post(
        f"/jobs/{waiting['id']}/fail",
        {"lease_id": waiting_lease, "error": f"bounce from {EMAIL}"},
        as_=token,
    )
    return {
        "waiting": waiting["id"],
        "active": active["id"],
        "active_lease": active_lease,
        "done": done["id"],
        "named": named["id"],
        "other": other["id"],
    }


def _erase(*args: str) -> str:
    out = StringIO()
    call_command("gdpr_erase", SUBJECT, *args, stdout=out)
    return out.getvalue()


def test_the_dry_run_lists_what_would_go_and_changes_nothing(api: Api, full: str) -> None:
    jobs = _world(api, full)
    before = {job.id: (job.data, job.result, job.error, job.state) for job in Job.objects.all()}
    report = _erase()
    assert "mail [waiting]: 1 job(s) would be redacted" in report
    assert "mail [active]: 1 job(s) would be redacted" in report
    assert "billing [completed]: 1 job(s) would be redacted" in report
    assert "crm [waiting]: 1 job(s) would be redacted" in report
    assert "mail: fields (error texts), email, name, userId" in report
    assert "Dry run: 4 job(s)" in report
    after = {job.id: (job.data, job.result, job.error, job.state) for job in Job.objects.all()}
    assert after == before and not ErasureRequest.objects.exists()
    event = AuditEvent.objects.get(action="gdpr.erasePreview")
    assert event.details["subject"] == pseudonym(SUBJECT) and event.details["total"] == 4
    assert str(jobs["other"]) not in event.job_ids


def test_redaction_leaves_no_trace_of_the_subject(api: Api, full: str) -> None:
    jobs = _world(api, full)
    report = _erase("--execute", "--reason", "DSR ticket 9")
    assert "4 job(s) redacted; receipt" in report
    for raw in (SUBJECT, EMAIL, NAME):
        assert raw.encode() not in _every_stored_byte()
    waiting = Job.objects.get(id=jobs["waiting"])
    assert waiting.data == {"email": REDACTED, "name": REDACTED, "n": 1}
    assert (waiting.error, waiting.errors, waiting.subject, waiting.key) == ("", [], None, None)
    assert waiting.tags == [] and waiting.state == JobState.CANCELLED
    done = Job.objects.get(id=jobs["done"])
    assert done.data == {"amount": 5} and done.result == {"receipt_to": {"email": REDACTED}}
    assert done.state == JobState.COMPLETED
    assert Job.objects.get(id=jobs["named"]).data == {"profile": {"name": REDACTED}}
    other = Job.objects.get(id=jobs["other"])
    assert other.data == {"userId": "u-1", "email": "x@example.com"}
    # The worker still holding the active job cannot write personal data back.
    ack = {"lease_id": jobs["active_lease"], "result": {"email": EMAIL}}
    assert api.post(f"/jobs/{jobs['active']}/ack", ack, as_=full).status == 409
    receipt = ErasureRequest.objects.get()
    assert receipt.subject_pseudonym == pseudonym(SUBJECT) and receipt.reason == "DSR ticket 9"
    assert receipt.operator == "command:gdpr_erase" and receipt.total == 4
    assert receipt.counts == {
        "mail": {"waiting": 1, "active": 1},
        "billing": {"completed": 1},
        "crm": {"waiting": 1},
    }
    event = AuditEvent.objects.get(action="gdpr.erase")
    assert event.details["receipt_id"] == receipt.pk
    assert "Nothing found about this subject." in _erase("--execute", "--reason", "again")


def test_delete_mode_removes_the_jobs(api: Api, full: str) -> None:
    jobs = _world(api, full)
    _erase("--execute", "--mode", "delete", "--reason", "DSR 10")
    assert list(Job.objects.values_list("id", flat=True)) == [Job.objects.get(id=jobs["other"]).id]
    for raw in (SUBJECT, EMAIL, NAME):
        assert raw.encode() not in _every_stored_byte()


def test_queues_under_legal_hold_are_skipped_and_reported(api: Api, full: str) -> None:
    jobs = _world(api, full)
    services.queue_set_legal_hold(name="billing", hold=True, reason="litigation", actor=SETUP)
    report = _erase("--execute", "--reason", "DSR 11")
    assert "billing: under legal hold, skipped" in report
    assert Job.objects.get(id=jobs["done"]).data == {"userId": SUBJECT, "amount": 5}
    assert ErasureRequest.objects.get().held == ["billing"]


def test_an_erasure_needs_a_reason_that_does_not_name_the_subject(api: Api, full: str) -> None:
    _world(api, full)
    with pytest.raises(CommandError, match="needs a reason"):
        _erase("--execute")
    with pytest.raises(CommandError, match="must not contain the subject"):
        _erase("--execute", "--reason", f"user {SUBJECT} asked")
    assert not ErasureRequest.objects.exists()


def test_the_api_route_uses_the_same_service(api: Api, full: str) -> None:
    _world(api, full)
    url = "/api/v1/compliance/erasures"
    operator = make_token("jobs-admin", "mail=*,admin")
    assert api.post(url, {"subject": SUBJECT}, as_=operator).status == 403
    eraser = make_token("dsr-bot", "*=erase")
    preview = api.post(url, {"subject": SUBJECT}, as_=eraser)
    assert preview.status == 200, preview.body
    assert preview.body["executed"] is False and preview.body["total"] == 4
    assert preview.body["skipped"] == [] and preview.body["other_stores"] == OTHER_STORES
    bad = api.post(url, {"subject": SUBJECT, "execute": "yes"}, as_=eraser)
    assert bad.status == 400 and bad.body["errors"][0]["path"] == "/execute"
    done = api.post(url, {"subject": SUBJECT, "execute": True, "reason": "DSR 12"}, as_=eraser)
    assert done.status == 200 and done.body["receipt_id"] == ErasureRequest.objects.get().pk
    assert AuditEvent.objects.get(action="gdpr.erase", status=200).actor == "token:dsr-bot"


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_pg_dump_finds_nothing_after_an_erasure(api: Api) -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    token = make_full_token()
    _world(api, token)
    _erase("--execute", "--reason", "DSR 13")
    params = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": params.get("PASSWORD") or ""}
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            params["HOST"] or "127.0.0.1",
            "-p",
            str(params["PORT"] or 5432),
            "-U",
            params["USER"],
            params["NAME"],
        ],
        capture_output=True,
        env=env,
        check=True,
    ).stdout
    assert b"queues_job" in dump
    for raw in (SUBJECT, EMAIL, NAME):
        assert raw.encode() not in dump


def test_rows_outside_the_jobs_table_are_left_as_they_are_and_the_receipt_says_so(
    api: Api, full: str
) -> None:
    """Erasure used to rewrite django-auditlog history and delete django-q2 rows that
    mentioned the subject: a way to rewrite history by erasing any string."""
    from auditlog.models import LogEntry
    from django.utils import timezone
    from django_q.models import Task

    _world(api, full)
    make_token(f"export-{SUBJECT}", "mail=getJob")  # a token named after the person
    now = timezone.now()
    Task.objects.create(
        id="t1", name="x", func="builtins.print", args=(SUBJECT,), started=now, stopped=now
    )
    history = [repr(row) for row in LogEntry.objects.order_by("id").values()]
    report = _erase("--execute", "--reason", "DSR 14")
    assert f"other stores: {OTHER_STORES}" in report
    assert [repr(row) for row in LogEntry.objects.order_by("id").values()] == history
    assert list(Task.objects.values_list("id", flat=True)) == ["t1"]
    receipt = ErasureRequest.objects.get()
    assert receipt.other_stores == OTHER_STORES and receipt.total == 4


def test_pii_fields_are_set_in_the_admin_and_receipts_are_read_only(api: Api, full: str) -> None:
    from .personas import superuser_client

    _world(api, full)
    root = superuser_client()
    queue = Queue.objects.get(name="crm")
    form = {"subject_path": "userId", "pii_fields": '["profile"]', "sensitive_fields": "[]"}
    page = root.post(f"/admin/queues/queue/{queue.pk}/change/", {**form, "_save": "Save"})
    assert page.status_code == 302
    event = AuditEvent.objects.filter(action="queue.update").latest("id")
    assert event.details["pii_fields"] == {
        "from": ["email", "name", "personalData"],
        "to": ["profile"],
    }
    _erase("--execute", "--reason", "DSR 15")
    crm = Job.objects.get(queue__name="crm")
    assert crm.data == {"profile": REDACTED}
    receipt = ErasureRequest.objects.get()
    listing = root.get("/admin/compliance/erasurerequest/")
    assert listing.status_code == 200 and "DSR 15" in listing.content.decode()
    assert root.get(f"/admin/compliance/erasurerequest/{receipt.pk}/delete/").status_code == 403


def test_erasure_from_the_admin_dry_run_then_execute(api: Api, full: str) -> None:
    from .personas import superuser_client

    _world(api, full)
    root = superuser_client()
    url = "/admin/compliance/erasurerequest/erase/"
    assert "New erasure" in root.get("/admin/compliance/erasurerequest/").content.decode()
    before = sorted(Job.objects.values_list("id", "state", "subject"))
    execute = {"subject": SUBJECT, "mode": "redact", "reason": "DSR 16", "execute": "1"}
    confirmed = {**execute, "confirmation": "ERASE"}
    blind = root.post(url, confirmed)  # no dry run yet
    assert blind.status_code == 400 and "run a dry run of this subject and mode first" in (
        blind.content.decode()
    )
    dry = root.post(url, {"subject": SUBJECT, "mode": "redact", "dry_run": "1"})
    assert "Dry run: 4 job(s) would be redacted" in dry.content.decode()
    assert SUBJECT not in json.dumps(dict(root.session.items()))  # a keyed digest only
    refusals = [
        ({**confirmed, "mode": "delete"}, "dry run of this subject and mode first"),
        ({**confirmed, "subject": "u-1"}, "dry run of this subject and mode first"),
        (execute, "type ERASE in the confirmation field"),
        ({**execute, "confirmation": "yes"}, "type ERASE in the confirmation field"),
        ({**confirmed, "reason": ""}, "needs a reason"),
    ]
    for form, message in refusals:
        refused = root.post(url, form)
        assert refused.status_code == 400 and message in refused.content.decode(), form
    assert not ErasureRequest.objects.exists()
    assert sorted(Job.objects.values_list("id", "state", "subject")) == before
    assert not AuditEvent.objects.filter(action="gdpr.erase").exists()
    done = root.post(url, confirmed)
    receipt = ErasureRequest.objects.get()
    assert f"receipt {receipt.pk}" in done.content.decode() and receipt.operator == "user:root"
    for raw in (SUBJECT, EMAIL, NAME):
        assert raw.encode() not in _every_stored_byte()
    again = root.post(url, confirmed)  # each execute needs its own dry run
    assert again.status_code == 400 and ErasureRequest.objects.count() == 1


def test_the_admin_says_deleted_for_a_delete(api: Api, full: str) -> None:
    """It said "deleteed" (the mode's name with "ed" on the end)."""
    from .personas import superuser_client

    _world(api, full)
    url = "/admin/compliance/erasurerequest/erase/"
    dry = superuser_client().post(url, {"subject": SUBJECT, "mode": "delete", "dry_run": "1"})
    page = dry.content.decode()
    assert "Dry run: 4 job(s) would be deleted" in page and "deleteed" not in page


def test_the_identifier_is_removed_from_every_value_and_from_the_result(
    api: Api, full: str
) -> None:
    """Found in review: an identifier outside the pii keys (a "to", a note) and the
    result's subject_path survived redaction."""
    subject = "anna@example.com"
    data = {"userId": "u-4711", "to": subject, "note": f"for {subject} only"}
    job = push(api, full, queue="mail", data=data, subject=subject)
    [leased] = pull(api, full, queue="mail")
    result = {"userId": "u-4711", "sent_to": subject, subject: True}
    api.post(f"/jobs/{job['id']}/ack", {"lease_id": leased["lease_id"], "result": result}, as_=full)
    call_command("gdpr_erase", subject, "--execute", "--reason", "DSR 17", stdout=StringIO())
    stored = Job.objects.get(id=job["id"])
    assert subject not in repr((stored.data, stored.result))
    assert stored.data == {"userId": "u-4711", "to": REDACTED, "note": f"for {REDACTED} only"}
    assert stored.result == {"userId": "u-4711", "sent_to": REDACTED, REDACTED: True}
    assert subject.encode() not in _every_stored_byte()


# -- review of issue 17: the reason, the failure code, the case of the subject ----------

CARD_REASONS = [
    "ticket card 4111 1111 1111 1111",
    "ticket 4111.1111.1111.1111",
    "ticket4111111111111111",
]


def _kept_in_clear() -> str:
    """Every receipt and audit row, digits only between separators."""
    rows = [list(ErasureRequest.objects.values()), list(AuditEvent.objects.values())]
    return re.sub(r"[ ._/-]", "", json.dumps(rows, default=str))


@pytest.mark.parametrize("reason", CARD_REASONS)
def test_a_card_number_in_the_reason_is_refused_by_the_api_command_and_admin(
    api: Api, full: str, reason: str
) -> None:
    """Reported: the reason went unchecked into the receipt and the append-only trail."""
    from .personas import superuser_client

    _world(api, full)
    before = sorted(Job.objects.values_list("id", "state", "subject"))
    eraser = make_token("dsr-bot", "*=erase")
    for execute in (True, False):
        body = {"subject": SUBJECT, "execute": execute, "reason": reason}
        call = api.post("/api/v1/compliance/erasures", body, as_=eraser)
        assert call.status == 422, call.body
        assert call.body["code"] == "card-number-detected"
        assert [error["path"] for error in call.body["errors"]] == ["/reason"]
        assert "4111111111111111" not in re.sub(r"[ ._/-]", "", json.dumps(call.body))
    refusal = AuditEvent.objects.filter(action="gdpr.erase", status=422).first()
    assert refusal is not None and refusal.details["cards"] == "411111******1111"
    with pytest.raises(CommandError, match="holds a payment card number"):
        _erase("--execute", "--reason", reason)
    admin = superuser_client().post(
        "/admin/compliance/erasurerequest/erase/",
        {"subject": SUBJECT, "mode": "redact", "reason": reason, "dry_run": "1"},
    )
    assert admin.status_code == 400 and "holds a payment card number" in admin.content.decode()
    assert not ErasureRequest.objects.exists()
    assert sorted(Job.objects.values_list("id", "state", "subject")) == before
    assert "4111111111111111" not in _kept_in_clear()


def test_redaction_clears_a_failure_code_naming_the_subject(api: Api, full: str) -> None:
    """Reported: fail's code (shown to everyone) survived the erasure of its subject."""
    job = push(api, full, queue="mail", data=PERSON)
    [leased] = pull(api, full, queue="mail")
    body = {"lease_id": leased["lease_id"], "error": "no mailbox", "code": f"NoMail.{SUBJECT}"}
    assert api.post(f"/jobs/{job['id']}/fail", body, as_=full).status == 200
    assert Job.objects.get(id=job["id"]).error_code == f"NoMail.{SUBJECT}"
    _erase("--execute", "--reason", "DSR 18")
    erased = Job.objects.get(id=job["id"])
    assert (erased.error_code, erased.error, erased.errors) == ("", "", [])
    assert SUBJECT not in json.dumps(api.get(f"/jobs/{job['id']}", as_=full).body)


@pytest.mark.parametrize(
    ("subject", "reason"),
    [(SUBJECT, f"request of {SUBJECT.upper()}"), ("Straße-9", "DSR for STRASSE-9")],
)
def test_the_reason_may_not_name_the_subject_in_any_case(
    api: Api, full: str, subject: str, reason: str
) -> None:
    """Reported: the check was case-sensitive, so "U-4711" was kept as the reason."""
    push(api, full, queue="mail", data={"userId": subject})
    for execute in (False, True):
        with pytest.raises(ErasureRefused, match="must not contain the subject"):
            subject_erase(
                subject=subject, mode="redact", reason=reason, execute=execute, actor=SETUP
            )
    with pytest.raises(CommandError, match="must not contain the subject"):
        call_command("gdpr_erase", subject, "--execute", "--reason", reason, stdout=StringIO())
    assert not ErasureRequest.objects.exists()
    assert Job.objects.get().subject == subject

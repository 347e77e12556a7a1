"""Jobs in the admin, as an operator (setup_roles' Operators): filters, search by id,
key, subject and error text, payloads and free texts masked for every role, a reveal
that asks for a reason and shows the values once, audited reads, a job's audit events,
and retry, cancel and delete actions that ask for confirmation and a reason and go
through the services, audited with the staff user."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from compliance.audit import recorded
from compliance.models import AuditEvent
from queues import services
from queues.models import Job, JobState, Queue
from security.masking import pseudonym

from .personas import logged_in, make_auditor, make_operator, superuser_client
from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"


@pytest.fixture
def jobs(api: Api) -> dict[str, str]:
    call_command("setup_roles", stdout=StringIO())
    token = make_token("svc", "*=*,admin")
    failed = push(
        api,
        token,
        queue="mail",
        data={"to": "a@example.com", "ssn": "078-05-1120"},
        key="k-failed",
        tags=["welcome"],
    )["id"]
    waiting = push(api, token, queue="mail", data={"n": 2}, subject="u-77")["id"]
    [leased] = pull(api, token, queue="mail", count=1)
    fail = {"lease_id": leased["lease_id"], "error": "SMTP 550 mailbox unavailable", "retry": False}
    assert api.post(f"/jobs/{failed}/fail", fail, as_=token).status == 200
    return {"failed": failed, "waiting": waiting}


def _operator(*queues: str) -> Client:
    """The operator persona ("olga") granted ``queues`` (default: mail)."""
    return logged_in(make_operator("olga", *(queues or ("mail",))))


def _listed(page: Any) -> set[str]:
    text = page.content.decode()
    return {str(job) for job in Job.objects.values_list("id", flat=True) if str(job) in text}


def test_filters_and_searches(jobs: dict[str, str]) -> None:
    op = _operator()
    assert _listed(op.get(JOBS, {"state__exact": "failed"})) == {jobs["failed"]}
    assert _listed(op.get(JOBS, {"tag": "welcome"})) == {jobs["failed"]}
    # Error texts are masked without the reveal right: no search in them either, or
    # guessing words would read them.
    assert _listed(op.get(JOBS, {"q": "mailbox UNAVAILABLE"})) == set()
    olga = get_user_model().objects.get_by_natural_key("olga")
    services.queue_grant(queue_name="mail", role="revealer", grantee=olga, actor=SETUP)
    assert _listed(op.get(JOBS, {"q": "mailbox UNAVAILABLE"})) == {jobs["failed"]}
    assert _listed(op.get(JOBS, {"q": "k-failed"})) == {jobs["failed"]}
    assert _listed(op.get(JOBS, {"q": "u-77"})) == {jobs["waiting"]}
    assert _listed(op.get(JOBS, {"q": jobs["waiting"]})) == {jobs["waiting"]}


def test_an_exact_search_uses_each_column_s_own_lookup(jobs: dict[str, str]) -> None:
    op = _operator()
    with CaptureQueriesContext(connection) as queries:
        assert _listed(op.get(JOBS, {"q": jobs["waiting"].upper()})) == {jobs["waiting"]}
    job_reads = [q["sql"] for q in queries.captured_queries if '"queues_job"' in q["sql"]]
    assert not [sql for sql in job_reads if "UPPER(" in sql], job_reads
    assert _listed(op.get(JOBS, {"q": "K-FAILED"})) == set()  # a key matches its case
    assert _listed(op.get(JOBS, {"q": "k-failed"})) == {jobs["failed"]}


def test_the_detail_masks_for_everyone_and_lists_audit_events(jobs: dict[str, str]) -> None:
    page = _operator().get(f"{JOBS}{jobs['failed']}/change/").content.decode()
    assert "[MASKED]" in page and "078-05-1120" not in page
    assert "SMTP 550" not in page and "a@example.com" in page
    assert "push ok 201 by token:svc" in page and "fail ok 200 by token:svc" in page
    as_root = superuser_client().get(f"{JOBS}{jobs['failed']}/change/").content.decode()
    assert "078-05-1120" not in as_root and 'id="reveal-link"' in as_root


def _act(client: Client, action: str, ids: list[str], **extra: str) -> Any:
    return client.post(JOBS, {"action": action, "_selected_action": ids, **extra})


def test_retry_asks_for_confirmation_and_a_reason_then_calls_the_service(
    jobs: dict[str, str],
) -> None:
    op = _operator()
    ask = _act(op, "retry_jobs", [jobs["failed"]])
    assert ask.status_code == 200 and "Retry 1 job(s)?" in ask.content.decode()
    assert Job.objects.get(id=jobs["failed"]).state == JobState.FAILED
    again = _act(op, "retry_jobs", [jobs["failed"]], confirm="yes", reason="")
    assert again.status_code == 200 and "This field is required" in again.content.decode()
    done = _act(op, "retry_jobs", [jobs["failed"]], confirm="yes", reason="INC-7 fixed")
    assert done.status_code == 302
    assert Job.objects.get(id=jobs["failed"]).state == JobState.WAITING
    event = AuditEvent.objects.get(action="retry")
    assert event.actor == "user:olga" and event.details["reason"] == "INC-7 fixed"


def _said(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def test_a_bulk_action_that_did_none_of_its_jobs_does_not_report_success(
    jobs: dict[str, str],
) -> None:
    """A waiting job cannot be retried: the action used to say "Retry: 0 job(s)." as a
    success."""
    op = _operator()
    none = _act(op, "retry_jobs", [jobs["waiting"]], confirm="yes", reason="r")
    [(level, summary), (_, why)] = _said(none)
    assert level == "error" and summary == "Retry: 0 of 1 job(s); refused:"
    assert why.startswith(jobs["waiting"])
    some = _act(op, "cancel_jobs", [jobs["failed"], jobs["waiting"]], confirm="yes", reason="r")
    assert ("warning", "Cancel: 1 of 2 job(s); refused:") in _said(some)


def test_cancel_and_delete_report_refusals_and_audit_each_job(jobs: dict[str, str]) -> None:
    op = _operator()
    both = [jobs["failed"], jobs["waiting"]]
    _act(op, "cancel_jobs", both, confirm="yes", reason="r1")
    assert Job.objects.get(id=jobs["waiting"]).state == JobState.CANCELLED
    assert Job.objects.get(id=jobs["failed"]).state == JobState.FAILED  # refused: finished
    assert list(AuditEvent.objects.filter(action="cancel").values_list("job_ids", flat=True)) == [
        [jobs["waiting"]]
    ]
    _act(op, "delete_jobs", both, confirm="yes", reason="cleanup")
    assert not Job.objects.exists()
    deleted = AuditEvent.objects.filter(action="delete", outcome="ok")
    assert {e.details["reason"] for e in deleted} == {"cleanup"} and deleted.count() == 2


def test_django_delete_view_is_closed_and_rights_are_checked(jobs: dict[str, str]) -> None:
    op = _operator()
    assert op.get(f"{JOBS}{jobs['waiting']}/delete/").status_code == 403
    client = logged_in(make_auditor("vic"))
    assert 'name="action"' not in client.get(JOBS).content.decode()
    assert (
        _act(client, "retry_jobs", [jobs["failed"]], confirm="yes", reason="x").status_code == 403
    )
    assert Job.objects.get(id=jobs["failed"]).state == JobState.FAILED


def test_an_operator_sees_and_acts_only_on_the_queues_granted(
    api: Api, jobs: dict[str, str]
) -> None:
    token = make_token("svc2", "*=*,admin")
    other = push(api, token, queue="billing", data={"n": 1})["id"]
    op = _operator("mail")
    listed = _listed(op.get(JOBS))
    assert listed == {jobs["failed"], jobs["waiting"]} and other not in listed
    assert op.get(f"{JOBS}{other}/change/").status_code in (302, 403, 404)
    queues = op.get("/admin/queues/queue/").content.decode()
    assert "mail" in queues and "billing" not in queues
    billing = Queue.objects.get(name="billing")
    form = {"subject_path": "x", "_save": "Save"}
    assert op.post(f"/admin/queues/queue/{billing.pk}/change/", form).status_code in (302, 403, 404)
    assert billing.subject_path == "userId" == Queue.objects.get(pk=billing.pk).subject_path
    _act(op, "cancel_jobs", [other, jobs["waiting"]], confirm="yes", reason="r")
    assert Job.objects.get(id=other).state == JobState.WAITING  # not theirs
    assert Job.objects.get(id=jobs["waiting"]).state == JobState.CANCELLED
    home = op.get("/admin/").content.decode()
    assert 'data-queue="mail"' in home and 'data-queue="billing"' not in home
    grants = AuditEvent.objects.filter(action="queue.grant")
    assert [(e.queue, e.details["user"], e.details["role"]) for e in grants] == [
        ("mail", "olga", "operator")
    ]


def test_grant_queue_command_and_revealer_role(jobs: dict[str, str]) -> None:
    op = _operator("mail")
    page = op.get(f"{JOBS}{jobs['failed']}/change/").content.decode()
    assert "078-05-1120" not in page and 'id="reveal-link"' not in page
    call_command("grant_queue", "mail", "--user", "olga", "--role", "revealer", stdout=StringIO())
    page = op.get(f"{JOBS}{jobs['failed']}/change/").content.decode()
    assert "078-05-1120" not in page and 'id="reveal-link"' in page  # masked until revealed
    assert "078-05-1120" in _reveal(op, jobs["failed"], "INC-3").content.decode()
    call_command(
        "grant_queue", "mail", "--user", "olga", "--role", "revealer", "--revoke", stdout=StringIO()
    )
    assert op.get(f"{JOBS}{jobs['failed']}/reveal/").status_code == 403


def test_the_list_defers_payloads_and_never_counts_the_whole_table(
    jobs: dict[str, str],
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    op = _operator()
    with CaptureQueriesContext(connection) as queries:
        assert op.get(JOBS).status_code == 200
    selects = [q["sql"] for q in queries.captured_queries if "queues_job" in q["sql"]]
    listing = [sql for sql in selects if sql.startswith('SELECT "queues_job"."id"')]
    assert listing and all('"queues_job"."data"' not in sql for sql in listing)
    counts = [sql for sql in selects if sql.startswith("SELECT COUNT(*)")]
    # One row past the cap: whether more match than the count says ("select all").
    assert counts and all("LIMIT 10001" in sql for sql in counts)


def test_an_operator_cannot_grant_itself_rights_or_unmask(api: Api, jobs: dict[str, str]) -> None:
    """Found in review: guardian's object-permission pages let anyone who may change
    one queue grant anything; and sensitive_fields could be emptied to unmask."""
    token = make_token("svc3", "*=*,admin")
    push(api, token, queue="billing", data={"n": 1})
    op = _operator("mail")
    olga = get_user_model().objects.get(username="olga")
    services.queue_grant(queue_name="billing", role="viewer", grantee=olga, actor=SETUP)
    billing = Queue.objects.get(name="billing")
    mail = Queue.objects.get(name="mail")
    for queue in (billing, mail):
        base = f"/admin/queues/queue/{queue.pk}/permissions/"
        assert op.get(base).status_code == 403
        grant = {"permissions": ["operate_queue", "reveal_queue", "change_queue"]}
        assert op.post(f"{base}user-manage/{olga.pk}/", grant).status_code == 403
    assert not olga.has_perm("queues.reveal_queue", mail)
    assert not get_user_model().objects.get(pk=olga.pk).has_perm("queues.operate_queue", billing)
    form = {"subject_path": "userId", "sensitive_fields": "[]", "pii_fields": "[]", "_save": "Save"}
    assert op.post(f"/admin/queues/queue/{mail.pk}/change/", form).status_code == 302
    mail.refresh_from_db()
    assert mail.sensitive_fields == ["ssn", "creditCard", "password", "apiKey"]
    assert "078-05-1120" not in op.get(f"{JOBS}{jobs['failed']}/change/").content.decode()
    assert (
        "Object permissions"
        not in op.get(f"/admin/queues/queue/{mail.pk}/change/").content.decode()
    )
    root_page = superuser_client().get(f"/admin/queues/queue/{mail.pk}/change/").content.decode()
    assert "Object permissions" in root_page


def test_filters_show_only_what_the_operator_may_see(api: Api, jobs: dict[str, str]) -> None:
    token = make_token("svc4", "*=*,admin")
    push(api, token, queue="secretq", data={"n": 1}, tags=["customer-bob@example.com"])
    page = _operator("mail").get(JOBS).content.decode()
    assert "welcome" in page  # mail's own tag
    assert "customer-bob@example.com" not in page and "secretq" not in page


# -- masking for every role, reveal, audited reads ----------------------------------------

API_KEY, DEEP_SSN, TEXT = "ak_live_5f2b9c0d", "219-09-9999", "password=hunter2"
SECRETS = (API_KEY, DEEP_SSN, TEXT)


@pytest.fixture
def vault(api: Api, jobs: dict[str, str]) -> str:
    """A failed job of queue "vault" with an apiKey, a nested ssn, and a worker's error
    and progress message that quote a password."""
    token = make_token("vault-svc", "*=*,admin")
    data = {"to": "c@example.com", "apiKey": API_KEY, "profile": {"ssn": DEEP_SSN}}
    job = push(api, token, queue="vault", data=data)["id"]
    [leased] = pull(api, token, queue="vault", count=1)
    lease = leased["lease_id"]
    progress = {"lease_id": lease, "progress": 50, "message": f"halfway, {TEXT}"}
    assert api.post(f"/jobs/{job}/progress", progress, as_=token).status == 200
    fail = {"lease_id": lease, "error": f"login refused: {TEXT}", "retry": False}
    assert api.post(f"/jobs/{job}/fail", fail, as_=token).status == 200
    return str(job)


def _secrets_in(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _reveal_form(client: Client, job: str) -> str:
    """The reveal form's single-use nonce (it is in the session too)."""
    page = client.get(f"{JOBS}{job}/reveal/")
    assert page.status_code == 200
    found = re.search(r'name="once" value="([^"]+)"', page.content.decode())
    assert found is not None
    return found.group(1)


def _reveal(client: Client, job: str, reason: str) -> Any:
    once = _reveal_form(client, job)
    return client.post(f"{JOBS}{job}/reveal/", {"once": once, "reason": reason})


def _auditor() -> Client:
    return logged_in(make_auditor())


def test_a_superuser_sees_a_job_page_masked(vault: str) -> None:
    page = superuser_client().get(f"{JOBS}{vault}/change/")
    text = page.content.decode()
    assert page.status_code == 200 and _secrets_in(text) == []
    # apiKey, profile.ssn, the error, its history entry and the progress message
    assert text.count("[MASKED]") >= 5 and "c@example.com" in text


def test_reveal_asks_a_reason_shows_the_values_once_and_records_no_value(vault: str) -> None:
    root = superuser_client()
    url = f"{JOBS}{vault}/reveal/"
    forged = logged_in(
        get_user_model().objects.get_by_natural_key("root"), enforce_csrf_checks=True
    )
    once = _reveal_form(forged, vault)
    assert forged.post(url, {"once": once, "reason": "x"}).status_code == 403  # no CSRF token
    once = _reveal_form(root, vault)
    blank = root.post(url, {"once": once, "reason": "  "})
    assert blank.status_code == 400 and "This field is required" in blank.content.decode()
    assert _secrets_in(blank.content.decode()) == []
    assert not AuditEvent.objects.filter(action="admin.reveal").exists()
    once = _reveal_form(root, vault)
    shown = root.post(url, {"once": once, "reason": "INC-9 customer callback"})
    assert shown.status_code == 200 and set(_secrets_in(shown.content.decode())) == set(SECRETS)
    assert "no-store" in shown["Cache-Control"]
    [event] = AuditEvent.objects.filter(action="admin.reveal")
    assert (event.actor, event.queue, event.job_ids, event.outcome) == (
        "user:root",
        "vault",
        [vault],
        "ok",
    )
    assert event.details == {"reason": "INC-9 customer callback"}
    assert _secrets_in(json.dumps(recorded(event), default=str)) == []
    reload = root.post(url, {"once": once, "reason": "INC-9 customer callback"})
    assert reload.status_code == 302 and reload["Location"] == f"{JOBS}{vault}/change/"
    assert AuditEvent.objects.filter(action="admin.reveal").count() == 1
    again = root.get(f"{JOBS}{vault}/change/").content.decode()
    assert _secrets_in(again) == [] and "[MASKED]" in again
    assert _secrets_in(root.get(url).content.decode()) == []  # the form, not the values


def test_reveal_needs_the_reveal_right_on_the_job_s_own_queue(vault: str) -> None:
    op = _operator("vault")
    olga = get_user_model().objects.get_by_natural_key("olga")
    services.queue_grant(queue_name="mail", role="revealer", grantee=olga, actor=SETUP)
    page = op.get(f"{JOBS}{vault}/change/").content.decode()
    assert 'id="reveal-link"' not in page and _secrets_in(page) == []
    url = f"{JOBS}{vault}/reveal/"
    assert op.get(url).status_code == 403
    refused = op.post(url, {"once": "guess", "reason": "curious"})
    assert refused.status_code == 403 and _secrets_in(refused.content.decode()) == []
    denied = AuditEvent.objects.filter(action="admin.reveal")
    assert [(e.actor, e.outcome, e.status, e.queue, e.job_ids) for e in denied] == 2 * [
        ("user:olga", "denied", 403, "vault", [vault])
    ]
    auditor = _auditor()
    page = auditor.get(f"{JOBS}{vault}/change/").content.decode()
    assert 'id="reveal-link"' not in page and _secrets_in(page) == []
    assert auditor.post(url, {"once": "guess", "reason": "audit"}).status_code == 403
    assert auditor.get(url).status_code == 403
    services.queue_grant(queue_name="vault", role="revealer", grantee=olga, actor=SETUP)
    assert set(_secrets_in(_reveal(op, vault, "INC-10").content.decode())) == set(SECRETS)


def test_opening_searching_and_filtering_jobs_are_audited_without_values(
    jobs: dict[str, str],
) -> None:
    op = _operator("mail")
    assert op.get(f"{JOBS}{jobs['failed']}/change/").status_code == 200
    [view] = AuditEvent.objects.filter(action="admin.jobView")
    assert (view.actor, view.queue, view.job_ids, view.outcome) == (
        "user:olga",
        "mail",
        [jobs["failed"]],
        "ok",
    )
    # The plain list shows ids, queues, states and times: no payload, subject or key.
    assert op.get(JOBS).status_code == 200 and op.get(JOBS, {"o": "2"}).status_code == 200
    assert not AuditEvent.objects.filter(action="admin.jobSearch").exists()
    assert _listed(op.get(JOBS, {"q": "u-77"})) == {jobs["waiting"]}
    filters = {"state__exact": "failed", "tag": "welcome"}
    assert _listed(op.get(JOBS, filters)) == {jobs["failed"]}
    search, filtered = AuditEvent.objects.filter(action="admin.jobSearch").order_by("id")
    assert (search.actor, search.queue, search.job_ids) == ("user:olga", "mail", [jobs["waiting"]])
    assert search.details == {
        "filters": {},
        "queues": ["mail"],
        "search_pseudonym": pseudonym("u-77"),
    }
    assert filtered.job_ids == [jobs["failed"]]
    assert filtered.details["filters"] == {
        "state__exact": "failed",
        "tag": f"pseudonym:{pseudonym('welcome')}",
    }
    for event in (search, filtered):
        assert not {"u-77", "welcome", "a@example.com"} & set(
            re.findall(r"[\w@.-]+", json.dumps(recorded(event)))
        )

"""Delayed jobs in the admin's job list: the state filter tells ``delayed`` (a waiting
job whose run_at is still to come) from ``waiting``, the list shows each job's reported
state and run_at, and the promote action (reason asked, audited, per-queue right) runs
a delayed job now through the service."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Job

from .personas import logged_in, make_auditor, make_operator
from .support import Api, make_token, push

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"
HOUR_MS = 3_600_000


@pytest.fixture
def jobs(api: Api) -> dict[str, str]:
    token = make_token("svc", "*=*,admin")
    return {
        "ready": push(api, token, queue="mail", data={"n": 1})["id"],
        "delayed": push(api, token, queue="mail", data={"n": 2}, delay=HOUR_MS)["id"],
        "other": push(api, token, queue="billing", data={"n": 3}, delay=HOUR_MS)["id"],
    }


def _listed(page: Any) -> set[str]:
    text = page.content.decode()
    return {str(job) for job in Job.objects.values_list("id", flat=True) if str(job) in text}


def _operator() -> Client:
    return logged_in(make_operator("olga", "mail"))


def test_the_state_filter_lists_exactly_the_delayed_jobs(jobs: dict[str, str]) -> None:
    op = _operator()
    assert _listed(op.get(JOBS, {"state__exact": "delayed"})) == {jobs["delayed"]}
    assert _listed(op.get(JOBS, {"state__exact": "waiting"})) == {jobs["ready"]}
    auditor = logged_in(make_auditor())
    assert _listed(auditor.get(JOBS, {"state__exact": "delayed"})) == {
        jobs["delayed"],
        jobs["other"],
    }
    page = op.get(JOBS).content.decode()
    assert "?state__exact=delayed" in page  # offered by the filter
    assert "Run at" in page and page.count(">delayed</td>") == 1


def _promote(client: Client, ids: list[str], **extra: str) -> Any:
    return client.post(JOBS, {"action": "promote_jobs", "_selected_action": ids, **extra})


def test_promote_asks_a_reason_runs_the_job_now_and_is_audited(jobs: dict[str, str]) -> None:
    op = _operator()
    page = op.get(f"{JOBS}{jobs['delayed']}/change/").content.decode()
    assert 'id="promote-form"' in page and "Run at" in page
    assert 'id="promote-form"' not in op.get(f"{JOBS}{jobs['ready']}/change/").content.decode()
    ask = _promote(op, [jobs["delayed"]])
    assert ask.status_code == 200 and "Promote 1 job(s)?" in ask.content.decode()
    assert Job.objects.get(id=jobs["delayed"]).run_at > timezone.now()
    blank = _promote(op, [jobs["delayed"]], confirm="yes", reason="")
    assert "This field is required" in blank.content.decode()
    # The trail is never erased: a card number in the reason is refused by the form.
    card = _promote(op, [jobs["delayed"]], confirm="yes", reason="card 4111 1111 1111 1111")
    assert "May not hold a payment card number" in card.content.decode()
    assert Job.objects.get(id=jobs["delayed"]).run_at > timezone.now()
    done = _promote(op, [jobs["delayed"], jobs["ready"]], confirm="yes", reason="VIP customer")
    assert done.status_code == 302
    assert Job.objects.get(id=jobs["delayed"]).run_at <= timezone.now()
    [event] = AuditEvent.objects.filter(action="promote")
    assert event.actor == "user:olga" and event.details["reason"] == "VIP customer"
    assert event.job_ids == [jobs["delayed"]]  # the ready one was refused by the service
    assert "Only a delayed job can be promoted" in op.get(JOBS).content.decode()  # the message
    assert _listed(op.get(JOBS, {"state__exact": "delayed"})) == set()


def test_promote_is_refused_outside_the_queues_granted_and_to_auditors(
    jobs: dict[str, str],
) -> None:
    op = _operator()
    assert op.get(f"{JOBS}{jobs['other']}/change/").status_code in (302, 403, 404)
    _promote(op, [jobs["other"]], confirm="yes", reason="r")
    auditor = logged_in(make_auditor())
    page = auditor.get(f"{JOBS}{jobs['delayed']}/change/").content.decode()
    assert 'id="promote-form"' not in page
    assert _promote(auditor, [jobs["delayed"]], confirm="yes", reason="r").status_code == 403
    assert Job.objects.get(id=jobs["other"]).run_at > timezone.now()
    assert Job.objects.get(id=jobs["delayed"]).run_at > timezone.now()
    assert not AuditEvent.objects.filter(action="promote").exists()

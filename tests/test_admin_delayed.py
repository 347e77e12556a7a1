"""Delayed jobs in the admin's job list: the state filter tells ``delayed`` (a waiting
job whose run_at is still to come) from ``waiting``, the list shows each job's reported
state and run_at, and the promote action (reason asked, audited, per-queue right) runs
a delayed job now through the service."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

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

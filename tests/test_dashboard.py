"""The admin's home is a dashboard: per queue, counts by state, the oldest waiting job's
age, completed and failed in the last hour and day, the failure rate, paused flag and
limits, all from the database; a JSON view feeds its refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queues import services
from queues.models import Job, JobState

from .personas import logged_in, make_auditor, make_staff, superuser_client
from .support import SETUP, Api, make_token, push

pytestmark = pytest.mark.django_db


def _finish(job_id: str, state: str, ago: timedelta) -> None:
    Job.objects.filter(id=job_id).update(state=state, finished_at=timezone.now() - ago)


def test_the_figures_come_from_the_database(api: Api) -> None:
    token = make_token("svc", "*=*,admin")
    ids = [push(api, token, queue="mail", data={"n": n})["id"] for n in range(6)]
    Job.objects.filter(id=ids[0]).update(created_at=timezone.now() - timedelta(seconds=90))
    _finish(ids[1], JobState.COMPLETED, timedelta(minutes=5))
    _finish(ids[2], JobState.COMPLETED, timedelta(hours=3))
    _finish(ids[3], JobState.FAILED, timedelta(minutes=30))
    _finish(ids[4], JobState.COMPLETED, timedelta(days=2))  # outside 24 h
    Job.objects.filter(id=ids[5]).update(state=JobState.WAITING_CHILDREN)
    services.queue_set_paused(name="mail", paused=True, actor=SETUP)
    services.queue_set_concurrency(name="mail", max_active=4, actor=SETUP)
    body = superuser_client().get("/admin/dashboard.json").json()
    [mail] = body["queues"]
    assert mail["states"]["waiting"] == 1 and mail["states"]["completed"] == 3
    assert mail["states"]["waiting-children"] == 1
    assert (mail["completed_1h"], mail["completed_24h"]) == (1, 2)
    assert (mail["failed_1h"], mail["failed_24h"]) == (1, 1)
    assert mail["failure_rate_24h"] == pytest.approx(1 / 3, abs=1e-3)
    assert 85 <= mail["oldest_waiting_s"] <= 120
    assert mail["paused"] is True and mail["concurrency"] == 4


def test_the_home_page_shows_it_to_whoever_may_view_queues(api: Api) -> None:
    push(api, make_token("svc", "*=*,admin"), queue="mail")
    page = superuser_client().get("/admin/").content.decode()
    assert 'id="dashboard"' in page and 'data-queue="mail"' in page
    assert 'id="refresh-interval"' in page and "visibilitychange" in page
    for state in JobState.values:  # a column for each, the new waiting-children too
        assert f"<th>{state}</th>" in page and f'<td class="{state}">' in page
    auditor, nobody = make_auditor("a"), make_staff("n")
    for user, shown in ((auditor, True), (nobody, False)):
        client = logged_in(user)
        assert ('id="dashboard"' in client.get("/admin/").content.decode()) is shown
        assert client.get("/admin/dashboard.json").status_code == (200 if shown else 403)

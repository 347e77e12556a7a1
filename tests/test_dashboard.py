"""The admin's home is a dashboard: per queue, counts by reported state, the oldest
waiting job's age, completed and failed in the last hour and day and the failure rate
(history, from the per-minute rollup), paused flag and limits, all from the database; a
JSON view feeds its refresh. Every count links to the job list filtered to exactly the
jobs it counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from queues import services
from queues.dashboard import STATES
from queues.models import Job, JobState, Queue

from .dashboards import every_state
from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client
from .support import SETUP, Api, make_token, push

pytestmark = pytest.mark.django_db


def _listed(response: Any) -> list[Job]:
    """The jobs a job-list response shows."""
    return list(response.context_data["cl"].result_list)


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
    assert 'id="refresh-interval"' in page and "queues/dashboard.js" in page
    for state in [*JobState.values, "delayed"]:  # a column for each reported state
        assert f'<th scope="col">{state}</th>' in page and f'<td class="{state}">' in page
    auditor, nobody = make_auditor("a"), make_staff("n")
    for user, shown in ((auditor, True), (nobody, False)):
        client = logged_in(user)
        assert ('id="dashboard"' in client.get("/admin/").content.decode()) is shown
        assert client.get("/admin/dashboard.json").status_code == (200 if shown else 403)


def test_failures_are_history_that_a_retry_does_not_rewrite() -> None:
    expected = every_state("mail")
    root = superuser_client()
    [mail] = root.get("/admin/dashboard.json").json()["queues"]
    assert mail["states"] == {state: expected[state] for state in STATES}
    for key in ("completed_1h", "completed_24h", "failed_1h", "failed_24h"):
        assert mail[key] == expected[key], key
    assert mail["failure_rate_24h"] == pytest.approx(3 / 5, abs=1e-3)
    failed = Job.objects.filter(queue__name="mail", state=JobState.FAILED)
    for job in failed:
        services.job_retry(job_id=job.id, actor=SETUP, reason="INC-7")
    [after] = root.get("/admin/dashboard.json").json()["queues"]
    assert after["states"]["failed"] == 0
    assert (after["failed_1h"], after["failed_24h"]) == (3, 3)
    assert after["failure_rate_24h"] == mail["failure_rate_24h"]


def test_every_count_links_to_the_job_list_of_exactly_those_jobs() -> None:
    expected = every_state("mail")
    every_state("other")  # never in mail's lists
    root = superuser_client()
    [mail] = [q for q in root.get("/admin/dashboard.json").json()["queues"] if q["name"] == "mail"]
    assert set(mail["links"]) == {
        *STATES,
        "completed_1h",
        "completed_24h",
        "failed_1h",
        "failed_24h",
    }
    for key, link in mail["links"].items():
        listing = root.get(link)
        assert listing.status_code == 200, (key, link)
        shown = _listed(listing)
        assert {job.queue.name for job in shown} <= {"mail"}, key
        assert len(shown) == expected[key], (key, link)
    # The same links on the page itself.
    page = root.get("/admin/").content.decode()
    assert mail["links"]["failed_1h"].replace("&", "&amp;") in page


def test_an_operator_sees_and_follows_only_their_queue() -> None:
    every_state("jobs:q")
    every_state("mail")
    olga = logged_in(make_operator())
    [row] = olga.get("/admin/dashboard.json").json()["queues"]
    assert row["name"] == "jobs:q"
    mail = Queue.objects.get(name="mail")
    assert olga.get(f"/admin/dashboard.json?queue={mail.pk}").status_code == 403
    assert len(_listed(olga.get(row["links"]["failed_24h"]))) == 3

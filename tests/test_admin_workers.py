"""The Workers page (issue 22): per queue the user may view, the token families that
pulled in the last 15 minutes or hold a lease, with the jobs in their hand and their
last pull, read from the pull events and the leases in a fixed number of queries."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queues.models import Queue
from queues.workers import WORKERS_WINDOW, workers_recent
from security.services import token_rotate

from .personas import logged_in, make_auditor, make_operator, make_staff, make_superuser
from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db
WORKERS = "/admin/queues/job/workers/"


@pytest.fixture
def busy(api: Api) -> dict[str, str]:
    """mailer holds two mail jobs and pulled again with nothing left; biller pulled
    one billing job and acked it; a token that was refused pulls nothing."""
    admin = make_token("svc", "*=*,admin")
    for _ in range(2):
        push(api, admin, queue="mail")
    push(api, admin, queue="billing")
    mailer = make_token("mailer", "mail=pull")
    assert len(pull(api, mailer, queue="mail", count=5)) == 2
    assert pull(api, mailer, queue="mail", count=5) == []
    biller = make_token("biller", "billing=pull,ack")
    [job] = pull(api, biller, queue="billing", count=1)
    assert (
        api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=biller).status == 200
    )
    stranger = make_token("stranger", "other=pull")
    assert api.post("/queues/mail/pull", {}, as_=stranger).status == 403
    return {"mailer": mailer, "biller": biller}


def _rows(page: Any) -> list[tuple[str, str, str, str]]:
    html = page.content.decode()
    return [
        tuple(re.sub(r"<[^>]+>", "", cell).strip() for cell in cells)  # type: ignore[misc]
        for cells in re.findall(
            r'<td class="queue">(.*?)</td>\s*<td class="name"[^>]*>(.*?)</td>\s*'
            r'<td class="in-hand">(.*?)</td>\s*<td class="last-pull">(.*?)</td>',
            html,
            re.S,
        )
    ]


def test_it_lists_who_pulled_per_queue_with_jobs_in_hand(busy: dict[str, str]) -> None:
    rows = _rows(logged_in(make_superuser()).get(WORKERS))
    assert [(queue, name, hand) for queue, name, hand, _ in rows] == [
        ("billing", "biller", "0"),
        ("mail", "mailer", "2"),
    ]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\)", last) for *_, last in rows
    )


def test_an_operator_sees_only_their_queues_and_an_auditor_all(busy: dict[str, str]) -> None:
    assert [row[:2] for row in _rows(logged_in(make_operator("olga", "mail")).get(WORKERS))] == [
        ("mail", "mailer")
    ]
    as_auditor = logged_in(make_auditor()).get(WORKERS)
    assert {row[0] for row in _rows(as_auditor)} == {"billing", "mail"}
    content = as_auditor.content.decode().split('id="content-main"', 1)[1]
    assert "<form" not in content and "<button" not in content  # nothing to do here: read only


def test_staff_without_rights_and_strangers_are_kept_out(busy: dict[str, str]) -> None:
    assert logged_in(make_staff()).get(WORKERS).status_code == 403
    from django.test import Client

    anonymous = Client().get(WORKERS)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_the_job_list_links_to_it_for_those_who_may_see_it(busy: dict[str, str]) -> None:
    html = logged_in(make_auditor()).get("/admin/queues/job/").content.decode()
    assert f'href="{WORKERS}" id="workers-link"' in html


def test_a_holder_outside_the_window_is_still_listed_with_its_jobs(busy: dict[str, str]) -> None:
    later = timezone.now() + WORKERS_WINDOW + timedelta(seconds=1)
    [worker] = workers_recent(queues=Queue.objects.all(), now=later)
    assert (worker.queue, worker.name, worker.in_hand, worker.last_pull) == (
        "mail",
        "mailer",
        2,
        None,
    )


def test_a_family_is_one_worker_named_by_its_current_token(api: Api) -> None:
    admin = make_token("svc", "*=*,admin")
    for _ in range(2):
        push(api, admin, queue="mail")
    old = make_token("mailer", "mail=pull")
    _, new = token_rotate(name="mailer", overlap_hours=1, actor=SETUP)
    pull(api, old, queue="mail", count=1)
    pull(api, new, queue="mail", count=1)
    [worker] = workers_recent(queues=Queue.objects.all(), now=timezone.now())
    assert (worker.name, worker.in_hand) == ("mailer", 2)
    assert worker.holder.startswith("family:")


def test_its_queries_do_not_grow_with_pulls_or_workers(api: Api, busy: dict[str, str]) -> None:
    from django.db import connection

    client = logged_in(make_superuser())

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(WORKERS).status_code == 200
        return len(captured)

    queries()  # the session's first page does more (its permissions, read once)
    before = queries()
    admin = make_token("svc2", "*=*,admin")
    for n in range(4):
        worker = make_token(f"w{n}", "*=pull")
        push(api, admin, queue=f"q{n}")
        pull(api, worker, queue=f"q{n}")
        pull(api, worker, queue="mail")
    assert len(_rows(client.get(WORKERS))) == 2 + 4 + 4
    assert queries() == before

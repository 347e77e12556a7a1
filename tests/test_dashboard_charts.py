"""The charts' JSON (admin/charts.json): per point, pushed, completed, failed and
retried and the run-time p50/p95 over 1 h, 24 h or 7 d, read from the per-minute rollup
alone (never the jobs table), for the queues the user may view and no other."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kernel.limits import INTERNAL_QUEUE_PREFIX
from queues.models import JobMinute, Queue
from queues.rollup import minute_end

from .dashboards import every_state, pushed
from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client

pytestmark = pytest.mark.django_db


def _chart(client: Any, **params: Any) -> dict[str, Any]:
    response = client.get("/admin/charts.json", params)
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_the_last_hour_has_a_point_per_minute_with_this_minutes_changes() -> None:
    every_state("mail")
    chart = _chart(superuser_client(), range="1h")
    assert chart["step"] == 60 and len(chart["t"]) == 60
    now = int(timezone.now().timestamp())
    assert chart["t"][-1] <= now < chart["t"][-1] + 60
    # 2 completed, 3 failed (one retried since), a cancelled, an active, a delayed, an
    # expiring and a waiting job: 10 pushes in all; one retry.
    totals = {kind: sum(chart[kind]) for kind in ("pushed", "completed", "failed", "retried")}
    assert totals == {"pushed": 10, "completed": 2, "failed": 3, "retried": 1}
    # Run times where jobs completed (this minute, or the last one), none elsewhere.
    assert 1 <= sum(p is not None for p in chart["p50_ms"]) <= 2
    assert chart["p95_ms"][0] is None


def test_each_range_sums_its_minutes_into_wider_points() -> None:
    queue = Queue.objects.create(name="mail")
    end = minute_end(timezone.now())
    for minutes_ago, pushes in ((3, 1), (90, 2), (60 * 30, 4), (60 * 24 * 8, 8)):
        JobMinute.objects.create(
            queue_id=queue.pk, minute=end - timedelta(minutes=minutes_ago), pushed=pushes
        )
    root = superuser_client()
    sums = {name: sum(_chart(root, range=name)["pushed"]) for name in ("1h", "24h", "7d")}
    assert sums == {"1h": 1, "24h": 3, "7d": 7}
    assert [_chart(root, range=name)["step"] for name in ("1h", "24h", "7d")] == [60, 300, 3600]


def test_an_operator_gets_only_their_queue_and_staff_without_rights_nothing() -> None:
    pushed("jobs:q")
    for _ in range(3):
        pushed("mail")
    olga = logged_in(make_operator())
    assert sum(_chart(olga)["pushed"]) == 1
    mine = Queue.objects.get(name="jobs:q").pk
    assert sum(_chart(olga, queue=mine)["pushed"]) == 1
    mail = Queue.objects.get(name="mail").pk
    assert olga.get("/admin/charts.json", {"queue": mail}).status_code == 403
    assert olga.get("/admin/charts.json", {"queue": "x"}).status_code == 403
    assert sum(_chart(logged_in(make_auditor()), queue=mail)["pushed"]) == 3
    nobody = logged_in(make_staff())
    assert nobody.get("/admin/charts.json").status_code == 403
    # Logged out: the admin's login page, never the figures.
    nobody.logout()
    assert nobody.get("/admin/charts.json").status_code == 302


def test_internal_queues_are_never_charted() -> None:
    internal = Queue.objects.create(name=f"{INTERNAL_QUEUE_PREFIX}webhooks")
    JobMinute.objects.create(queue_id=internal.pk, minute=minute_end(timezone.now()), pushed=5)
    root = superuser_client()
    assert sum(_chart(root)["pushed"]) == 0
    assert sum(_chart(root, queue=internal.pk)["pushed"]) == 0


def test_no_query_of_the_charts_touches_the_jobs_table() -> None:
    every_state("mail")
    root = superuser_client()
    for name in ("1h", "24h", "7d"):
        with CaptureQueriesContext(connection) as queries:
            _chart(root, range=name)
        assert queries.captured_queries, name
        touched = [q["sql"] for q in queries.captured_queries if 'queues_job"' in q["sql"]]
        touched += [q["sql"] for q in queries.captured_queries if "queues_job " in q["sql"]]
        assert not touched, touched
        assert any("queues_jobminute" in q["sql"] for q in queries.captured_queries)

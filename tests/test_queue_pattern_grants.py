"""Staff rights on a queue pattern (``grant_queue 'mail*'``): matched as a token rule's
pattern is (anchored, ``*`` any run of characters, so ``mailx`` too), covering queues
created after the grant in the queue list, the job list and pages, the dashboard data
and the event stream, never other queues or internal ones; revoked, audited and listed
in the access review."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from compliance.models import AuditEvent
from queues.admin.livestream import staff_reaches
from queues.models import Job, JobState, Queue
from queues.staffaccess import may_on, queues_for
from security.models import StaffQueueGrant

from .personas import logged_in, make_staff_user, superuser_client
from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"


def _grant(*args: str) -> str:
    out = StringIO()
    call_command("grant_queue", *args, stdout=out)
    return out.getvalue()


def _failed_job(api: Api, token: str, queue: str) -> str:
    job: str = push(api, token, queue=queue, data={"n": 1})["id"]
    [leased] = pull(api, token, queue=queue, count=1)
    body = {"lease_id": leased["lease_id"], "error": "boom", "retry": False}
    assert api.post(f"/jobs/{job}/fail", body, as_=token).status == 200
    return job


def _names(user: Any, right: str = "view_queue") -> set[str]:
    """As a request would see it: the user read afresh (a user object keeps its grants
    once read, as Django keeps its permissions)."""
    fresh = get_user_model().objects.get(pk=user.pk)
    return set(queues_for(fresh, right).values_list("name", flat=True))


def test_a_pattern_grant_covers_a_queue_created_after_it(api: Api) -> None:
    olga = make_staff_user("olga", "Operators")
    assert "Granted" in _grant("mail*", "--user", "olga", "--role", "operator")
    assert not Queue.objects.exists()  # granted before any queue existed
    token = make_token("svc", "*=*,admin")
    mine = _failed_job(api, token, "mail:eu")
    mailx = push(api, token, queue="mailx", data={"n": 2})["id"]
    other = _failed_job(api, token, "jobs:other")

    # Patterns match as token rules do: anchored, so "mailx" matches "mail*" but
    # "jobs:other" (and a queue that merely contains "mail") does not.
    push(api, token, queue="old-mail", data={"n": 3})
    assert _names(olga) == {"mail:eu", "mailx"}
    assert _names(olga, "operate_queue") == {"mail:eu", "mailx"}
    assert _names(olga, "reveal_queue") == set()
    assert not may_on(olga, "view_queue", Queue.objects.get(name="jobs:other"))
    assert not may_on(olga, "view_queue", Queue(name="_flashq.webhooks"))

    op = logged_in(olga)
    queues = op.get("/admin/queues/queue/").content.decode()
    assert "mail:eu" in queues and "mailx" in queues and "jobs:other" not in queues
    listing = op.get(JOBS).content.decode()
    assert mine in listing and mailx in listing and other not in listing
    assert op.get(f"{JOBS}{mine}/change/").status_code == 200
    assert op.get(f"{JOBS}{other}/change/").status_code in (302, 403, 404)
    dashboard = op.get("/admin/dashboard.json").json()
    assert {row["name"] for row in dashboard["queues"]} == {"mail:eu", "mailx"}
    reaches = staff_reaches(olga.pk)
    assert reaches is not None and reaches("mail:eu") and not reaches("jobs:other")

    # ...and acts on it: a retry with a reason, through the service and audited.
    done = op.post(
        JOBS,
        {
            "action": "retry_jobs",
            "_selected_action": [mine, other],
            "confirm": "yes",
            "reason": "r",
        },
    )
    assert done.status_code == 302
    assert Job.objects.get(id=mine).state == JobState.WAITING
    assert Job.objects.get(id=other).state == JobState.FAILED  # not theirs
    assert AuditEvent.objects.get(action="retry").actor == "user:olga"


def test_revoking_a_pattern_grant_takes_every_matching_queue_away(api: Api) -> None:
    olga = make_staff_user("olga", "Operators")
    _grant("mail*", "--user", "olga", "--role", "operator")
    push(api, make_token("svc", "*=*,admin"), queue="mail:eu", data={"n": 1})
    assert _names(olga) == {"mail:eu"}
    assert "Revoked" in _grant("mail*", "--user", "olga", "--role", "operator", "--revoke")
    assert _names(olga) == set() and not StaffQueueGrant.objects.exists()
    assert logged_in(olga).get("/admin/queues/queue/").status_code == 403
    events = AuditEvent.objects.filter(action__in=["queue.grant", "queue.revoke"]).order_by("id")
    assert [(e.action, e.queue, e.details["pattern"], e.details["user"]) for e in events] == [
        ("queue.grant", "mail*", "mail*", "olga"),
        ("queue.revoke", "mail*", "mail*", "olga"),
    ]
    assert events[0].actor == "command:grant_queue"


def test_a_group_holds_a_pattern_grant_for_its_members(api: Api) -> None:
    vera = make_staff_user("vera", "Auditors")
    group = Group.objects.create(name="Mail team")
    vera.groups.add(group)
    _grant("mail*", "--group", "Mail team", "--role", "viewer")
    push(api, make_token("svc", "*=*,admin"), queue="mail:us", data={"n": 1})
    assert _names(vera) == {"mail:us"}
    assert _names(vera, "operate_queue") == set()


def test_a_view_only_pattern_grant_still_may_not_post(api: Api) -> None:
    make_staff_user("vic")
    _grant("mail*", "--user", "vic", "--role", "viewer")
    job = _failed_job(api, make_token("svc", "*=*,admin"), "mail:eu")
    viewer = logged_in(get_user_model().objects.get_by_natural_key("vic"))
    assert job in viewer.get(JOBS).content.decode()
    body = {"action": "retry_jobs", "_selected_action": [job], "confirm": "yes", "reason": "r"}
    assert viewer.post(JOBS, body).status_code == 403
    assert Job.objects.get(id=job).state == JobState.FAILED


def test_a_bad_pattern_is_refused_and_nothing_is_granted() -> None:
    make_staff_user("olga", "Operators")
    with pytest.raises(CommandError, match="queue pattern"):
        _grant("mail*?", "--user", "olga", "--role", "operator")
    assert not StaffQueueGrant.objects.exists()
    assert not AuditEvent.objects.filter(action="queue.grant").exists()


def test_the_access_review_lists_pattern_grants() -> None:
    make_staff_user("olga", "Operators")
    make_staff_user("vera").groups.add(Group.objects.create(name="Mail team"))
    _grant("mail*", "--user", "olga", "--role", "revealer")
    _grant("billing:*", "--group", "Mail team", "--role", "viewer")
    page = superuser_client().get("/admin/access-review/").content.decode()
    assert "queues.reveal_queue on queue pattern mail*" in page
    assert "queues.view_queue on queue pattern billing:* (via group Mail team)" in page
    root = get_user_model().objects.get_by_natural_key("root")
    csv = logged_in(root).get("/admin/access-review/", {"format": "csv"}).content.decode()
    assert "queues.reveal_queue on queue pattern mail*" in csv


def test_pattern_grants_are_read_once_per_request(api: Api) -> None:
    """Every right checked on a page (the index asks each admin) reads the user's
    pattern grants from the user object once read: one query, not one per check."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_staff_user("olga", "Operators")
    _grant("mail*", "--user", "olga", "--role", "operator")
    push(api, make_token("svc", "*=*,admin"), queue="mail:eu", data={"n": 1})
    op = logged_in(get_user_model().objects.get_by_natural_key("olga"))
    for url in ("/admin/", "/admin/queues/job/", "/admin/queues/queue/"):
        with CaptureQueriesContext(connection) as queries:
            assert op.get(url).status_code == 200
        reads = [q for q in queries.captured_queries if "security_staffqueuegrant" in q["sql"]]
        assert len(reads) == 1, url


def test_per_queue_grants_are_read_once_per_right_per_request(api: Api) -> None:
    """The same for django-guardian's grants: a list asks each action's right and each
    row's, the database answers once per right (the index asked it 36 times before)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_staff_user("olga", "Operators")
    token = make_token("svc", "*=*,admin")
    for _ in range(3):
        push(api, token, queue="jobs:q", data={"n": 1})
    _grant("jobs:q", "--user", "olga", "--role", "operator")
    op = logged_in(get_user_model().objects.get_by_natural_key("olga"))
    for url in ("/admin/", "/admin/queues/job/", "/admin/queues/queue/"):
        with CaptureQueriesContext(connection) as queries:
            assert op.get(url).status_code == 200
        reads = [q["sql"] for q in queries.captured_queries if "guardian_userobject" in q["sql"]]
        rights = {"view_queue", "change_queue", "operate_queue", "reveal_queue"}
        assert len(reads) <= len(rights), (url, len(reads))


def test_a_grant_is_seen_by_the_caller_holding_the_user_object() -> None:
    olga = make_staff_user("olga", "Operators")
    Queue.objects.create(name="jobs:q")
    assert not queues_for(olga, "view_queue").exists()  # read and kept on the object
    from compliance.audit import Actor
    from queues.services import queue_grant

    queue_grant(queue_name="jobs:q", role="viewer", grantee=olga, actor=Actor.command("t"))
    assert set(queues_for(olga, "view_queue").values_list("name", flat=True)) == {"jobs:q"}

"""The buttons on a job's page (queues.admin.jobbuttons): retry, cancel, promote and
cancel flow, each shown only when the job's state allows it and the user holds the right
on its queue; each asks a reason, calls the service with the staff user as actor and
goes back to the job's page. Forged POSTs by whoever lacks the right change nothing. And
the page's JSON: indented, escaped, masked, with Copy buttons."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from compliance.models import AuditEvent
from queues.flowspec import parse_flow
from queues.models import Job, JobState
from queues.services import flow_push, queue_grant

from .personas import OPERATOR_QUEUE, StaffClient, logged_in, make_operator
from .support import SETUP, Api, clear_audit, make_token, pull, push

pytestmark = pytest.mark.django_db

JOBS = "/admin/queues/job/"
OTHER = "other:q"
HOUR_MS = 3_600_000
BUTTON_IDS = ("retry-form", "cancel-form", "promote-form", "cancel-flow-form")
# What each state offers someone with every right (a job in no flow).
OFFERED = {
    "waiting": {"cancel-form"},
    "delayed": {"cancel-form", "promote-form"},
    "active": {"cancel-form"},
    "failed": {"retry-form"},
    "cancelled": {"retry-form"},
    "completed": {"retry-form"},
}


@pytest.fixture
def token(db: None) -> str:
    return make_token("svc", "*=*,admin")


def _job(api: Api, token: str, state: str, queue: str = OPERATOR_QUEUE, **fields: Any) -> str:
    """A job of ``queue`` brought to ``state`` through the API. Jobs to be pulled are
    pushed with a high priority, so the pull takes this one and no earlier job."""
    if state == "delayed":
        return str(push(api, token, queue=queue, delay=HOUR_MS, **fields)["id"])
    if state in ("waiting", "cancelled"):
        job = push(api, token, queue=queue, **fields)
        if state == "cancelled":
            assert api.post(f"/jobs/{job['id']}/cancel", as_=token).status == 200
        return str(job["id"])
    fields.setdefault("max_attempts", 1)
    pushed = push(api, token, queue=queue, priority=100, **fields)
    [leased] = pull(api, token, queue=queue)
    assert leased["id"] == pushed["id"]
    lease = {"lease_id": leased["lease_id"]}
    if state == "failed":
        body = {**lease, "error": "smtp 550", "retry": False}
        assert api.post(f"/jobs/{leased['id']}/fail", body, as_=token).status == 200
    elif state == "completed":
        body = {**lease, "result": {"sent": True}}
        assert api.post(f"/jobs/{leased['id']}/ack", body, as_=token).status == 200
    return str(leased["id"])


def _page(client: Client, job_id: str) -> str:
    return client.get(f"{JOBS}{job_id}/change/").content.decode()


def _buttons(client: Client, job_id: str) -> set[str]:
    page = _page(client, job_id)
    return {button for button in BUTTON_IDS if f'id="{button}"' in page}


def _do(client: Client, job_id: str, verb: str, reason: str | None = "INC-7 stuck") -> Any:
    data = {} if reason is None else {"confirm": "yes", "reason": reason}
    return client.post(f"{JOBS}{job_id}/do/{verb}/", data)


def _state(job_id: str) -> str:
    return str(Job.objects.get(id=job_id).state)


def _operator_viewing_other() -> StaffClient:
    """An operator of OPERATOR_QUEUE who may also see, not run, OTHER."""
    user = make_operator("olga")
    queue_grant(queue_name=OTHER, role="viewer", grantee=user, actor=SETUP)
    return logged_in(user)


@pytest.mark.parametrize("state", sorted(OFFERED))
def test_each_persona_gets_the_buttons_the_state_and_its_rights_allow(
    api: Api, token: str, superuser: StaffClient, auditor: StaffClient, state: str
) -> None:
    mine, other = _job(api, token, state), _job(api, token, state, queue=OTHER)
    olga = _operator_viewing_other()
    assert _buttons(superuser, mine) == _buttons(superuser, other) == OFFERED[state]
    assert _buttons(olga, mine) == OFFERED[state]
    page = _page(olga, other)
    assert other in page and not _buttons(olga, other)  # sees it, may not act on it
    page = _page(auditor, mine)
    assert mine in page and not _buttons(auditor, mine)


def test_staff_without_rights_gets_neither_the_page_nor_a_button(
    api: Api, token: str, staff: StaffClient
) -> None:
    job_id = _job(api, token, "failed")
    response = staff.get(f"{JOBS}{job_id}/change/")
    assert response.status_code in (302, 403, 404)
    assert not {b for b in BUTTON_IDS if f'id="{b}"' in response.content.decode()}


def test_retry_asks_a_reason_then_retries_and_returns_to_the_job(
    api: Api, token: str, operator: StaffClient
) -> None:
    job_id = _job(api, token, "failed")
    clear_audit()
    asked = _do(operator, job_id, "retry", reason=None)
    assert asked.status_code == 200 and 'name="reason"' in asked.content.decode()
    assert _state(job_id) == "failed"
    blank = _do(operator, job_id, "retry", reason="")
    assert blank.status_code == 400 and _state(job_id) == "failed"

    done = _do(operator, job_id, "retry")

    assert done.status_code == 302 and done["Location"] == f"{JOBS}{job_id}/change/"
    assert _state(job_id) == "waiting"
    [event] = AuditEvent.objects.filter(action="retry")
    assert (event.actor, event.details["reason"], event.job_ids) == (
        "user:olga",
        "INC-7 stuck",
        [job_id],
    )
    page = operator.get(done["Location"]).content.decode()
    assert "Retry: the job is waiting again." in page
    assert 'id="cancel-form"' in page and 'id="retry-form"' not in page


def test_retry_runs_a_completed_job_again(api: Api, token: str, operator: StaffClient) -> None:
    job_id = _job(api, token, "completed")
    asked = _do(operator, job_id, "retry", reason=None).content.decode()
    assert f"Run completed job {job_id} again?" in asked and _state(job_id) == "completed"
    assert _do(operator, job_id, "retry").status_code == 302
    job = Job.objects.get(id=job_id)
    assert (job.state, job.attempts, job.result) == (JobState.WAITING, 1, {"sent": True})
    [event] = AuditEvent.objects.filter(action="retry")
    assert event.details["was"] == "completed"


def test_retrying_a_completed_job_whose_key_is_taken_says_why_and_changes_nothing(
    api: Api, token: str, operator: StaffClient
) -> None:
    job_id = _job(api, token, "completed", key="invoice-7")
    push(api, token, key="invoice-7")  # a newer unfinished job holds the key now
    clear_audit()
    done = _do(operator, job_id, "retry")
    assert done.status_code == 302 and _state(job_id) == "completed"
    page = operator.get(done["Location"]).content.decode()
    assert "An unfinished job of this queue has the same key" in page
    assert not AuditEvent.objects.filter(action="retry").exists()


@pytest.mark.parametrize(
    ("state", "verb", "after", "action"),
    [
        ("waiting", "cancel", "cancelled", "cancel"),
        ("active", "cancel", "cancelled", "cancel"),
        ("delayed", "promote", "waiting", "promote"),
    ],
)
def test_cancel_and_promote_act_through_the_service_with_the_reason(
    api: Api, token: str, operator: StaffClient, state: str, verb: str, after: str, action: str
) -> None:
    job_id = _job(api, token, state)
    clear_audit()
    assert _do(operator, job_id, verb).status_code == 302
    assert _state(job_id) == after
    [event] = AuditEvent.objects.filter(action=action)
    assert (event.actor, event.details["reason"]) == ("user:olga", "INC-7 stuck")
    if verb == "promote":
        assert _buttons(operator, job_id) == {"cancel-form"}  # ready now, no longer delayed


def _flow(parent_queue: str, child_queue: str) -> tuple[str, str]:
    body = {"job": {"data": {"r": 1}}, "children": [{"queue": child_queue, "job": {"data": {}}}]}
    root = parse_flow(body, queue_name=parent_queue, max_bytes=settings.MAX_JOB_BYTES)
    flow = flow_push(root=root, owner="family:t", actor=SETUP).root
    return str(flow.job.id), str(flow.children[0].job.id)


def test_cancel_flow_cancels_the_whole_flow_from_a_child(operator: StaffClient) -> None:
    parent, child = _flow(OPERATOR_QUEUE, OPERATOR_QUEUE)
    assert "cancel-flow-form" in _buttons(operator, child)
    clear_audit()
    done = _do(operator, child, "cancel-flow")
    assert done.status_code == 302 and done["Location"] == f"{JOBS}{child}/change/"
    assert _state(parent) == _state(child) == "cancelled"
    [event] = AuditEvent.objects.filter(action="flow.cancel")
    assert (event.actor, event.details["reason"]) == ("user:olga", "INC-7 stuck")
    assert "Cancel flow: 2 job(s) cancelled." in operator.get(done["Location"]).content.decode()


def test_cancel_flow_needs_the_cancel_right_on_the_flows_root(api: Api) -> None:
    parent, child = _flow(OTHER, OPERATOR_QUEUE)
    olga = _operator_viewing_other()
    assert "cancel-flow-form" not in _buttons(olga, child)
    assert "cancel-form" in _buttons(olga, child)  # the child alone is hers to cancel
    assert _do(olga, child, "cancel-flow").status_code == 403
    assert _state(parent) == "waiting-children" and _state(child) == "waiting"


def test_cancel_flow_forged_on_a_job_in_no_flow_cancels_nothing(
    api: Api, token: str, operator: StaffClient
) -> None:
    job_id = _job(api, token, "waiting")
    done = _do(operator, job_id, "cancel-flow")
    assert done.status_code == 302 and _state(job_id) == "waiting"
    assert "not for a waiting job" in operator.get(done["Location"]).content.decode()


@pytest.mark.parametrize(
    ("state", "verb"),
    [("failed", "retry"), ("waiting", "cancel"), ("delayed", "promote")],
)
def test_forged_posts_without_the_right_change_nothing(
    api: Api, token: str, auditor: StaffClient, staff: StaffClient, state: str, verb: str
) -> None:
    mine, other = _job(api, token, state), _job(api, token, state, queue=OTHER)
    olga = _operator_viewing_other()
    blind = logged_in(make_operator("otto"))  # runs OPERATOR_QUEUE, cannot see OTHER
    before = {job.id: (job.state, job.run_at) for job in Job.objects.all()}
    clear_audit()
    for client, job_id, refused in (
        (auditor, mine, {403}),
        (staff, mine, {403, 404}),  # may not even see it
        (olga, other, {403}),
        (blind, other, {403, 404}),
    ):
        assert _do(client, job_id, verb).status_code in refused
        assert _do(client, job_id, verb, reason=None).status_code in refused  # no form either
    assert {job.id: (job.state, job.run_at) for job in Job.objects.all()} == before
    assert not AuditEvent.objects.filter(action__in=["retry", "cancel", "promote"]).exists()


def test_a_get_never_acts(api: Api, token: str, operator: StaffClient) -> None:
    job_id = _job(api, token, "failed")
    clear_audit()
    page = operator.get(f"{JOBS}{job_id}/do/retry/", {"confirm": "yes", "reason": "x"})
    assert page.status_code == 200 and 'id="confirm-form"' in page.content.decode()
    assert _state(job_id) == "failed" and not AuditEvent.objects.filter(action="retry").exists()


def test_a_post_without_the_csrf_token_is_refused(api: Api, token: str) -> None:
    job_id = _job(api, token, "failed")
    olga = logged_in(make_operator("olga"), enforce_csrf_checks=True)
    assert _do(olga, job_id, "retry").status_code == 403
    assert _state(job_id) == "failed"


def test_an_unknown_button_is_404(api: Api, token: str, superuser: StaffClient) -> None:
    job_id = _job(api, token, "failed")
    assert _do(superuser, job_id, "delete").status_code == 404
    assert Job.objects.filter(id=job_id).exists()


SECRET = {"userId": "u1", "ssn": "078-05-1120", "note": "<script>x()</script>", "deep": {"n": 1}}


def test_the_json_is_indented_escaped_and_masked_with_copy_buttons(
    api: Api, token: str, superuser: StaffClient, auditor: StaffClient
) -> None:
    job_id = _job(api, token, "failed", data=SECRET)
    olga = logged_in(make_operator("olga"))
    for client in (olga, auditor, superuser):  # the superuser may reveal, on its own page
        page = _page(client, job_id)
        assert "078-05-1120" not in page and "smtp 550" not in page
        assert "<script>x()</script>" not in page
        assert '<pre class="json" id="json-data">{\n  &quot;deep&quot;: {\n    &quot;n' in page
        assert "&quot;ssn&quot;: &quot;[MASKED]&quot;" in page
        assert "&lt;script&gt;x()&lt;/script&gt;" in page
        assert "&quot;error&quot;: &quot;[MASKED]&quot;" in page  # the error history
        for name in ("data", "result", "errors"):
            assert f'data-copy="json-{name}"' in page and f'id="json-{name}"' in page
        assert "queues/copy.js" in page

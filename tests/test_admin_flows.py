"""Flows and dependencies in the admin: a job's page shows its parent, children,
dependencies and dependents, each a link with its state, for the queues the staff user
may see (the others only counted, never named), at most SHOWN per relation with a link
to the job list filtered on the rest; "Cancel flow" asks a reason, calls the service
(one flow.cancel event) and needs the cancel right on the flow's root's queue; and
``waiting-children`` is a state the job list filters on."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from compliance.models import AuditEvent
from queues import relations, services
from queues.jobspec import JobSpec
from queues.models import Job, JobState

from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client
from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"


def _job(queue: str) -> str:
    spec = JobSpec(data={"to": "a@example.com"})
    job = services.job_push(queue_name=queue, spec=spec, owner="family:t", actor=SETUP).job
    return str(job.id)


@pytest.fixture
def flow(api: Api) -> dict[str, Any]:
    """A flow pushed over the API: a parent in mail with children in mail (one then
    completed, one waiting) and in billing; and a job in mail pushed with depends_on
    the parent."""
    token = make_token("svc", "*=*,admin")
    child = {"queue": "mail", "job": {"data": {"n": 1}}}
    body = {
        "job": {"data": {"n": 0}},
        "children": [child, child, {"queue": "billing", "job": {"data": {"n": 2}}}],
    }
    pushed = api.post("/queues/mail/flows", body, as_=token)
    assert pushed.status == 201, pushed.body
    kids = [node["id"] for node in pushed.body["children"]]
    [first] = pull(api, token, queue="mail", count=1)
    ack = api.post(f"/jobs/{first['id']}/ack", {"lease_id": first["lease_id"]}, as_=token)
    assert ack.status == 200
    completed = first["id"]
    waiting = next(kid for kid in kids[:2] if kid != completed)
    dependent = push(api, token, queue="mail", depends_on=[pushed.body["id"]])["id"]
    return {
        "parent": pushed.body["id"],
        "kids": [waiting, completed, kids[2]],
        "dependent": dependent,
    }


def _page(client: Client, job: str) -> str:
    page = client.get(f"{JOBS}{job}/change/")
    assert page.status_code == 200
    return str(page.content.decode())


def _operator(*queues: str) -> Client:
    return logged_in(make_operator("olga", *(queues or ("mail",))))


def _block(page: str, relation: str) -> str:
    """The page's list for one relation (empty when the page has none)."""
    start = page.find(f'id="relation-{relation}"')
    return "" if start < 0 else page[start : page.find("</ul>", start)]


def test_a_job_page_links_its_relations_with_their_states(flow: dict[str, Any]) -> None:
    op = _operator()
    page = _page(op, flow["parent"])
    waiting, completed, elsewhere = flow["kids"]
    children = _block(page, "children")
    assert f'href="{JOBS}{waiting}/change/"' in children and ">waiting</span>" in children
    assert f'href="{JOBS}{completed}/change/"' in children and ">completed</span>" in children
    # The child in billing, a queue olga may not see: counted, never named.
    assert "1 more in queues you cannot see" in children and elsewhere not in page
    dependents = _block(page, "dependents")
    assert f'href="{JOBS}{flow["dependent"]}/change/"' in dependents
    assert _block(page, "parent") == "" and _block(page, "dependencies") == ""
    of_child = _block(_page(op, waiting), "parent")
    assert f'href="{JOBS}{flow["parent"]}/change/"' in of_child
    assert ">waiting-children</span>" in of_child
    dependencies = _block(_page(op, flow["dependent"]), "dependencies")
    assert f'href="{JOBS}{flow["parent"]}/change/"' in dependencies
    as_root = _block(_page(superuser_client(), flow["parent"]), "children")
    assert f"{JOBS}{elsewhere}/change/" in as_root and "cannot see" not in as_root
    assert 'id="relations"' not in _page(op, _job("mail"))  # a job on its own


def test_a_hidden_parent_is_counted_not_named(flow: dict[str, Any]) -> None:
    billing_kid = flow["kids"][2]
    page = _page(_operator("billing"), billing_kid)
    assert "1 more in queues you cannot see" in _block(page, "parent")
    assert flow["parent"] not in page


def test_a_long_relation_is_cut_short_and_links_to_the_filtered_list(
    flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relations, "SHOWN", 1)
    op = _operator()
    children = _block(_page(op, flow["parent"]), "children")
    assert children.count('class="related-job"') == 1
    link = f"{JOBS}?related=children%3A{flow['parent']}"
    assert f'href="{link}"' in children and "and 1 more" in children
    listed = op.get(link).content.decode()
    rows = {job for job in Job.objects.values_list("id", flat=True) if f"{JOBS}{job}/" in listed}
    waiting, completed, _ = flow["kids"]
    assert {str(job) for job in rows} == {waiting, completed}  # not billing's
    [search] = AuditEvent.objects.filter(action="admin.jobSearch")
    assert search.details["filters"] == {"related": f"children:{flow['parent']}"}
    assert sorted(search.job_ids) == sorted([waiting, completed])
    for bad in ("children:not-a-uuid", f"cousins:{flow['parent']}"):
        refused = op.get(JOBS, {"related": bad})
        assert refused.status_code == 302 and refused["Location"].endswith("?e=1")


def test_waiting_children_is_a_state_the_job_list_filters_on(flow: dict[str, Any]) -> None:
    op = _operator()
    page = op.get(JOBS, {"state__exact": "waiting-children"}).content.decode()
    listed = {job for job in (flow["parent"], flow["dependent"], *flow["kids"]) if job in page}
    assert listed == {flow["parent"], flow["dependent"]}
    assert "?state__exact=waiting-children" in op.get(JOBS).content.decode()


# -- cancel flow --------------------------------------------------------------------------


def _cancel_flow(client: Client, ids: list[str], **extra: str) -> Any:
    return client.post(JOBS, {"action": "cancel_flows", "_selected_action": ids, **extra})


def _states(ids: list[str]) -> list[str]:
    return [Job.objects.get(id=job).state for job in ids]


def test_cancel_flow_asks_a_reason_calls_the_service_and_is_audited(
    flow: dict[str, Any],
) -> None:
    op = _operator()
    waiting = flow["kids"][0]
    assert 'id="cancel-flow-form"' in _page(op, flow["parent"])
    assert 'id="cancel-flow-form"' in _page(op, waiting)  # a child: in the flow too
    assert 'id="cancel-flow-form"' not in _page(op, flow["dependent"])  # depends_on only
    ask = _cancel_flow(op, [waiting])
    assert ask.status_code == 200 and "Cancel the whole flow" in ask.content.decode()
    blank = _cancel_flow(op, [waiting], confirm="yes", reason="")
    assert "This field is required" in blank.content.decode()
    card = _cancel_flow(op, [waiting], confirm="yes", reason="card 4111 1111 1111 1111")
    assert "May not hold a payment card number" in card.content.decode()
    assert not AuditEvent.objects.filter(action="flow.cancel").exists()
    assert _states([flow["parent"], waiting]) == [JobState.WAITING_CHILDREN, JobState.WAITING]
    done = _cancel_flow(op, [waiting], confirm="yes", reason="INC-20 bad import")
    assert done.status_code == 302
    assert _states([flow["parent"], waiting]) == [JobState.CANCELLED, JobState.CANCELLED]
    [event] = AuditEvent.objects.filter(action="flow.cancel")
    assert event.actor == "user:olga" and event.details["reason"] == "INC-20 bad import"
    assert flow["parent"] in event.job_ids and waiting in event.job_ids
    assert Job.objects.get(id=flow["kids"][1]).state == JobState.COMPLETED  # finished stays


def test_cancel_flow_needs_the_cancel_right_on_the_job_s_queue(flow: dict[str, Any]) -> None:
    op = _operator("billing")
    olga = get_user_model().objects.get_by_natural_key("olga")
    services.queue_grant(queue_name="mail", role="viewer", grantee=olga, actor=SETUP)
    page = _page(op, flow["parent"])  # she may see it, not act on it
    assert 'id="relations"' in page and 'id="cancel-flow-form"' not in page
    _cancel_flow(op, [flow["parent"]], confirm="yes", reason="r")
    assert "you may not cancel jobs of mail" in op.get(JOBS).content.decode()
    # Her own queue's child is in the flow, but cancelling the flow cancels the root in
    # mail and everything under it: that takes the right on the root's queue.
    billing_kid = flow["kids"][2]
    assert 'id="cancel-flow-form"' not in _page(op, billing_kid)
    _cancel_flow(op, [billing_kid], confirm="yes", reason="r")
    assert "where the flow&#x27;s root is" in op.get(JOBS).content.decode()
    for viewer in (make_auditor(), make_staff("vera")):
        if viewer.username == "vera":
            services.queue_grant(queue_name="mail", role="viewer", grantee=viewer, actor=SETUP)
        client = logged_in(viewer)
        page = _page(client, flow["parent"])
        assert 'id="relations"' in page and 'id="cancel-flow-form"' not in page
        assert _cancel_flow(client, [flow["parent"]], confirm="yes", reason="r").status_code == 403
    assert _states([flow["parent"], flow["kids"][0]]) == [
        JobState.WAITING_CHILDREN,
        JobState.WAITING,
    ]
    assert not AuditEvent.objects.filter(action="flow.cancel").exists()

"""POST /queues/{queue}/flows and GET /jobs/{id}/children: a flow written whole or not
at all, its states and rows, its limits, the push checks on every job with the node's
path, push needed on every queue, keys, and the children a token may see."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection

from compliance.models import AuditEvent
from kernel.limits import MAX_FLOW_DEPTH, MAX_FLOW_JOBS
from queues.models import DependencyKind, Job, JobDependency, JobState, Queue

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"


def _leaf(queue: str, **job: Any) -> dict[str, Any]:
    return {"queue": queue, "job": {"data": {}, **job}}


def _flow(api: Api, token: str, body: dict[str, Any], queue: str = "flow:root") -> Any:
    return api.post(f"/queues/{queue}/flows", body, as_=token)


# A root in flow:root with three children: a leaf in flow:a, a parent in flow:b (its
# own two leaves in flow:a and flow:c, and on_child_failure "ignore"), a leaf in flow:c.
TREE: dict[str, Any] = {
    "job": {"data": {"step": "root"}, "priority": 3},
    "on_child_failure": "continue",
    "children": [
        _leaf("flow:a", data={"step": "a"}),
        {
            "queue": "flow:b",
            "job": {"data": {"step": "b"}},
            "on_child_failure": "ignore",
            "children": [_leaf("flow:a", data={"step": "b.a"}), _leaf("flow:c")],
        },
        _leaf("flow:c", data={"step": "c"}),
    ],
}


def _snapshot() -> tuple[int, int, int, list[str]]:
    return (
        Job.objects.count(),
        JobDependency.objects.count(),
        Queue.objects.count(),
        sorted(Queue.objects.values_list("name", flat=True)),
    )


def test_a_flow_is_written_whole_and_answers_with_its_tree(api: Api, full: str) -> None:
    call = _flow(api, full, TREE)
    assert call.status == 201, call.body
    tree = call.body
    assert (tree["queue"], tree["state"]) == ("flow:root", "waiting-children")
    shape = [(c["queue"], c["state"], len(c["children"])) for c in tree["children"]]
    assert shape == [
        ("flow:a", "waiting", 0),
        ("flow:b", "waiting-children", 2),
        ("flow:c", "waiting", 0),
    ]
    inner = tree["children"][1]["children"]
    assert [(c["queue"], c["state"], c["children"]) for c in inner] == [
        ("flow:a", "waiting", []),
        ("flow:c", "waiting", []),
    ]
    root = Job.objects.get(id=tree["id"])
    assert (root.state, root.on_child_failure, root.priority, root.watched) == (
        JobState.WAITING_CHILDREN,
        "continue",
        3,
        False,
    )
    parent = Job.objects.get(id=tree["children"][1]["id"])
    assert (parent.state, parent.on_child_failure, parent.watched) == (
        JobState.WAITING_CHILDREN,
        "ignore",
        True,
    )
    children = [c["id"] for c in tree["children"]]
    assert all(Job.objects.get(id=job_id).watched for job_id in children)
    # Each parent waits for each of its children, in the order given.
    rows = JobDependency.objects.order_by("id").values_list("job_id", "depends_on_id", "kind")
    expected = [(tree["id"], job_id) for job_id in children]
    expected.insert(2, (parent.id, inner[0]["id"]))
    expected.insert(3, (parent.id, inner[1]["id"]))
    assert [(str(a), str(b)) for a, b, _ in rows] == [(str(a), str(b)) for a, b in expected]
    assert {kind for _, _, kind in rows} == {DependencyKind.CHILD}
    assert Job.objects.get(id=children[0]).data == {"step": "a"}
    assert {"flow:root", "flow:a", "flow:b", "flow:c"} <= set(
        Queue.objects.values_list("name", flat=True)
    )


def test_parents_are_never_pulled_and_leaves_are_pulled_from_their_own_queues(
    api: Api, full: str
) -> None:
    tree = _flow(api, full, TREE).body
    assert pull(api, full, queue="flow:root", count=10) == []
    assert pull(api, full, queue="flow:b", count=10) == []
    leaves_a = {tree["children"][0]["id"], tree["children"][1]["children"][0]["id"]}
    assert {j["id"] for j in pull(api, full, queue="flow:a", count=10)} == leaves_a
    assert len(pull(api, full, queue="flow:c", count=10)) == 2


def test_one_audit_event_lists_every_job_and_counts_per_queue_never_payloads(
    api: Api, full: str
) -> None:
    call = _flow(api, full, TREE)
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert (event.action, event.status, event.queue) == ("flow.push", 201, "flow:root")
    assert event.job_ids == _ids(call.body)
    assert event.details["count"] == 6
    assert event.details["queues"] == {"flow:root": 1, "flow:a": 2, "flow:b": 1, "flow:c": 2}
    assert sorted(event.details["queues_created"]) == ["flow:a", "flow:b", "flow:c", "flow:root"]
    assert "step" not in str(event.details)


def _chain(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = _leaf("flow:deep")
    for _ in range(levels - 2):
        node = {**_leaf("flow:deep"), "children": [node]}
    return {"job": {"data": {}}, "children": [node]}


def test_ten_levels_are_a_flow_and_eleven_are_refused(api: Api, full: str) -> None:
    assert _flow(api, full, _chain(MAX_FLOW_DEPTH)).status == 201
    before = _snapshot()
    call = _flow(api, full, _chain(MAX_FLOW_DEPTH + 1))
    assert call.status == 400, call.body
    [error] = call.body["errors"]
    assert error["path"] == "/children/0" * (MAX_FLOW_DEPTH - 1) + "/children"
    assert "at most 10 levels" in error["message"]
    assert _snapshot() == before


def test_a_thousand_jobs_are_a_flow_and_one_more_is_refused(api: Api, full: str) -> None:
    def flow(children: int) -> dict[str, Any]:
        return {"job": {"data": {}}, "children": [_leaf("flow:many")] * children}

    call = _flow(api, full, flow(MAX_FLOW_JOBS - 1))
    assert call.status == 201 and len(call.body["children"]) == MAX_FLOW_JOBS - 1
    before = _snapshot()
    refused = _flow(api, full, flow(MAX_FLOW_JOBS))
    assert refused.status == 400
    assert refused.body["errors"] == [
        {"path": "/children", "message": "a flow holds at most 1000 jobs, its root included"}
    ]
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"job": {"data": {}}}, "/children"),
        ({"job": {"data": {}}, "children": []}, "/children"),
        ({"children": [_leaf("flow:a")]}, "/job"),
        ({"job": {"data": {}}, "children": [_leaf("flow:a")], "other": 1}, "/other"),
        ({"job": {"data": {}}, "children": [{"job": {"data": {}}}]}, "/children/0/queue"),
        ({"job": {"data": {}}, "children": [_leaf("-bad")]}, "/children/0/queue"),
        ({"job": {"data": {}}, "children": [_leaf("flow:a", key="k")]}, "/children/0/job/key"),
        ({"job": {"data": {}}, "children": ["x"]}, "/children/0"),
        ({"job": {"data": {}}, "children": [{**_leaf("flow:a"), "children": "x"}]},
         "/children/0/children"),
        ({"job": {"data": {}}, "children": [_leaf("flow:a")], "on_child_failure": "retry"},
         "/on_child_failure"),
        ({"job": {"data": {}}, "children": [{**_leaf("flow:a"), "on_child_failure": 1}]},
         "/children/0/on_child_failure"),
        # Not a string at all (a list or an object cannot even be looked up): a 400 too.
        ({"job": {"data": {}}, "children": [_leaf("flow:a")], "on_child_failure": ["fail"]},
         "/on_child_failure"),
        ({"job": {"data": {}}, "children": [{**_leaf("flow:a"), "on_child_failure": {}}]},
         "/children/0/on_child_failure"),
        ({"job": {"data": {}}, "children": [_leaf("flow:a", priority="high")]},
         "/children/0/job/priority"),
        ({"job": {"data": {}, "depends_on": [str(uuid.uuid4())]}, "children": [_leaf("a")]},
         "/job/depends_on"),
        ({"job": {"data": {}}, "children": [_leaf("a", depends_on=[str(uuid.uuid4())])]},
         "/children/0/job/depends_on"),
        ({"job": {"data": {}}, "children": [{**_leaf("flow:a"), "children": [{"queue": "q"}]}]},
         "/children/0/children/0/job"),
    ],
)  # fmt: skip
def test_a_malformed_flow_is_a_400_naming_the_node(
    api: Api, full: str, body: dict[str, Any], path: str
) -> None:
    before = _snapshot()
    call = _flow(api, full, body)
    assert call.status == 400, call.body
    assert path in [error["path"] for error in call.body["errors"]]
    assert _snapshot() == before


def _deep(job: dict[str, Any], queue: str = "flow:deep") -> dict[str, Any]:
    """A flow whose job at /children/1/children/0 is ``job`` in ``queue``."""
    return {
        "job": {"data": {}},
        "children": [
            _leaf("flow:a"),
            {**_leaf("flow:b"), "children": [{"queue": queue, "job": job}, _leaf("flow:c")]},
        ],
    }


def test_a_job_off_its_queue_schema_deep_in_the_tree_refuses_the_flow(api: Api, full: str) -> None:
    Queue.objects.create(
        name="flow:typed",
        json_schema={
            "type": "object",
            "required": ["to"],
            "properties": {"to": {"type": "string"}},
        },
    )
    before = _snapshot()
    call = _flow(api, full, _deep({"data": {"to": 5}}, queue="flow:typed"))
    assert call.status == 422, call.body
    assert [e["path"] for e in call.body["errors"]] == ["/children/1/children/0/job/data/to"]
    assert _snapshot() == before
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert (event.status, event.details["paths"]) == (422, ["/children/1/children/0/job/data"])


@pytest.mark.parametrize(
    ("job", "path"),
    [
        ({"data": {"card": CARD}}, "/children/1/children/0/job/data/card"),
        ({"data": {}, "subject": CARD}, "/children/1/children/0/job/subject"),
        ({"data": {}, "tags": ["ok", CARD]}, "/children/1/children/0/job/tags/1"),
        ({"data": {"userId": CARD}}, "/children/1/children/0/job/data/userId"),
    ],
)
def test_a_card_number_anywhere_in_the_tree_refuses_the_flow(
    api: Api, full: str, job: dict[str, Any], path: str
) -> None:
    before = _snapshot()
    call = _flow(api, full, _deep(job))
    assert (call.status, call.body["code"]) == (422, "card-number-detected"), call.body
    assert path in [e["path"] for e in call.body["errors"]]
    assert _snapshot() == before


def test_a_card_number_in_a_child_queue_name_refuses_the_flow(api: Api, full: str) -> None:
    before = _snapshot()
    call = _flow(api, full, _deep({"data": {}}, queue="q:4111111111111111"))
    assert (call.status, call.body["code"]) == (422, "card-number-detected")
    assert [e["path"] for e in call.body["errors"]] == ["/children/1/children/0/queue"]
    assert _snapshot() == before
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert "4111111111111111" not in str(event.details)


def test_a_job_over_its_queue_cap_refuses_the_flow_with_413(api: Api, full: str) -> None:
    Queue.objects.create(name="flow:small", max_job_bytes=50)
    before = _snapshot()
    call = _flow(api, full, _deep({"data": {"text": "x" * 100}}, queue="flow:small"))
    assert call.status == 413, call.body
    assert [e["path"] for e in call.body["errors"]] == ["/children/1/children/0/job/data"]
    assert _snapshot() == before


def test_a_job_over_max_job_bytes_is_named_by_its_path(api: Api, full: str, settings: Any) -> None:
    settings.MAX_JOB_BYTES = 200
    call = _flow(api, full, _deep({"data": {"text": "x" * 300}}))
    assert call.status == 413
    assert [e["path"] for e in call.body["errors"]] == ["/children/1/children/0/job/data"]
    assert not Job.objects.exists()


def test_push_is_needed_on_every_queue_of_the_tree(api: Api) -> None:
    token = make_token("flows", "flow:*=push,getJob", deny=("flow:c=push",))
    before = _snapshot()
    call = _flow(api, token, TREE)
    assert call.status == 403, call.body
    assert _snapshot() == before
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert (event.outcome, event.queue, event.details["denied_queue"]) == (
        "denied",
        "flow:root",
        "flow:c",
    )
    # Without the deny, the same token pushes the same flow.
    allowed = make_token("flows-all", "flow:*=push")
    assert _flow(api, allowed, TREE).status == 201


def test_push_on_the_root_queue_alone_is_refused_before_the_body_is_read(api: Api) -> None:
    token = make_token("children-only", "flow:a=push")
    call = _flow(api, token, {"job": {"data": {}}, "children": "not even a list"})
    assert call.status == 403


def _raw_data(job_id: str) -> bytes:
    value = uuid.UUID(job_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data FROM queues_job WHERE id = %s",
            [value if connection.vendor == "postgresql" else value.hex],
        )
        [(data,)] = cursor.fetchall()
    return bytes(data) if not isinstance(data, str) else data.encode()


def test_every_job_of_a_flow_is_sealed_at_rest(api: Api, full: str) -> None:
    marker = "flow-plaintext-5be1"
    body = {
        "job": {"data": {"note": marker}},
        "children": [
            {
                **_leaf("flow:a", data={"note": marker}),
                "children": [_leaf("flow:b", data={"note": marker})],
            }
        ],
    }
    tree = _flow(api, full, body).body
    ids = [tree["id"], tree["children"][0]["id"], tree["children"][0]["children"][0]["id"]]
    for job_id in ids:
        raw = _raw_data(job_id)
        assert marker.encode() not in raw
        assert Job.objects.get(id=job_id).data == {"note": marker}


def _ids(tree: dict[str, Any]) -> list[str]:
    """The tree's ids, each parent before its children."""
    return [tree["id"], *(job_id for child in tree["children"] for job_id in _ids(child))]


def test_the_root_key_makes_a_retry_return_the_same_flow(api: Api, full: str) -> None:
    body = {**TREE, "job": {**TREE["job"], "key": "order-7"}}
    first = _flow(api, full, body)
    again = _flow(api, full, body)
    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert Job.objects.count() == 6
    [event] = AuditEvent.objects.filter(request_id=again.headers["X-Request-ID"])
    assert (event.action, event.status, event.details) == (
        "flow.push",
        200,
        {"count": 6, "created": False},
    )
    assert event.job_ids == _ids(first.body)
    other = make_token("other", "*=*")
    conflict = _flow(api, other, body)
    assert (conflict.status, conflict.body["code"]) == (409, "key_conflict")
    assert first.body["id"] not in str(conflict.body)
    assert Job.objects.count() == 6


def test_a_root_key_held_by_a_plain_push_returns_that_job(api: Api, full: str) -> None:
    job = push(api, full, queue="flow:root", key="k")
    body = {"job": {"data": {}, "key": "k"}, "children": [_leaf("flow:a")]}
    call = _flow(api, full, body)
    assert call.status == 200
    assert call.body == {"id": job["id"], "queue": "flow:root", "state": "waiting", "children": []}


def test_a_flow_in_a_single_queue_and_a_child_group(api: Api, full: str) -> None:
    body = {"job": {"data": {}}, "children": [_leaf("flow:root", group="g1")]}
    call = _flow(api, full, body)
    assert call.status == 201
    assert Queue.objects.get(name="flow:root").grouped is True
    [leaf] = pull(api, full, queue="flow:root", count=5)
    assert (leaf["id"], leaf["group"]) == (call.body["children"][0]["id"], "g1")


# -- GET /jobs/{id}/children ------------------------------------------------------------


def test_children_are_listed_in_order_as_getjob_shows_them(api: Api, full: str) -> None:
    tree = _flow(api, full, TREE).body
    call = api.get(f"/jobs/{tree['id']}/children", as_=full)
    assert call.status == 200, call.body
    children = call.body["children"]
    assert [c["id"] for c in children] == [c["id"] for c in tree["children"]]
    assert [c["state"] for c in children] == ["waiting", "waiting-children", "waiting"]
    single = api.get(f"/jobs/{tree['children'][0]['id']}", as_=full).body
    assert children[0] == {k: v for k, v in single.items() if k not in ("parent", "depends_on")}
    assert (single["parent"], single["depends_on"]) == (tree["id"], [])
    assert api.get(f"/jobs/{tree['id']}", as_=full).body["parent"] is None
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert (event.action, event.queue, event.details) == (
        "getJobChildren",
        "flow:root",
        {"count": 3},
    )
    assert event.job_ids == [tree["id"], *(c["id"] for c in tree["children"])]


def test_children_show_their_result_and_error_code(api: Api, full: str) -> None:
    body = {"job": {"data": {}}, "children": [_leaf("flow:a"), _leaf("flow:b")]}
    tree = _flow(api, full, body).body
    [a] = pull(api, full, queue="flow:a")
    assert (
        api.post(
            f"/jobs/{a['id']}/ack", {"lease_id": a["lease_id"], "result": {"ok": 1}}, as_=full
        ).status
        == 200
    )
    [b] = pull(api, full, queue="flow:b")
    failed = {"lease_id": b["lease_id"], "retry": False, "error": "boom", "code": "Boom"}
    assert api.post(f"/jobs/{b['id']}/fail", failed, as_=full).status == 200
    children = api.get(f"/jobs/{tree['id']}/children", as_=full).body["children"]
    assert [(c["state"], c["result"], c["error_code"]) for c in children] == [
        ("completed", {"ok": 1}, ""),
        ("failed", None, "Boom"),
    ]
    assert children[1]["error"] == "[MASKED]"  # no reveal


def test_children_in_queues_without_getjob_are_left_out_and_the_rest_masked(api: Api) -> None:
    owner = make_token("owner", "*=*")
    body = {
        "job": {"data": {}},
        "children": [
            _leaf("flow:a", data={"password": "hunter2", "n": 1}),
            _leaf("secret:x", data={"n": 2}),
            _leaf("flow:c", data={"n": 3}),
        ],
    }
    tree = _flow(api, owner, body).body
    reader = make_token("reader", "flow:*=getJob")
    call = api.get(f"/jobs/{tree['id']}/children", as_=reader)
    assert call.status == 200
    children = call.body["children"]
    assert [c["queue"] for c in children] == ["flow:a", "flow:c"]
    assert children[0]["data"] == {"password": "[MASKED]", "n": 1}
    assert "secret" not in str(call.body)
    revealer = make_token("revealer", "flow:*=getJob,reveal")
    shown = api.get(f"/jobs/{tree['id']}/children", as_=revealer).body["children"]
    assert shown[0]["data"] == {"password": "hunter2", "n": 1}
    # getJob on the parent's queue alone shows none of them.
    parent_only = make_token("parent-only", "flow:root=getJob")
    assert api.get(f"/jobs/{tree['id']}/children", as_=parent_only).body == {"children": []}


def test_getjob_names_no_parent_or_dependency_the_token_may_not_read(api: Api) -> None:
    """A token that reads a job in a shared queue is not told the ids of the jobs it is
    tied to in queues it cannot read (an id names a job, and its time of creation)."""
    owner = make_token("owner", "*=*")
    body = {"job": {"data": {}}, "children": [_leaf("shared:a"), _leaf("flow:a")]}
    tree = _flow(api, owner, body, queue="secret:p").body
    child = tree["children"][0]["id"]
    hidden = push(api, owner, queue="secret:d")["id"]
    seen = push(api, owner, queue="shared:b")["id"]
    dependent = push(api, owner, queue="shared:a", depends_on=[hidden, seen])["id"]
    reader = make_token("reader", "shared:*=getJob")
    for job_id in (child, dependent):
        call = api.get(f"/jobs/{job_id}", as_=reader)
        assert call.status == 200
        assert tree["id"] not in str(call.body) and hidden not in str(call.body)
    assert api.get(f"/jobs/{child}", as_=reader).body["parent"] is None
    assert api.get(f"/jobs/{dependent}", as_=reader).body["depends_on"] == [seen]
    # A token that may read them is shown them all.
    assert api.get(f"/jobs/{child}", as_=owner).body["parent"] == tree["id"]
    assert api.get(f"/jobs/{dependent}", as_=owner).body["depends_on"] == [hidden, seen]


def test_children_need_getjob_on_the_parents_queue(api: Api, full: str) -> None:
    tree = _flow(api, full, TREE).body
    pusher = make_token("pusher", "flow:*=push")
    stranger = make_token("stranger", "other:*=*")
    assert api.get(f"/jobs/{tree['id']}/children", as_=pusher).status == 403
    assert api.get(f"/jobs/{tree['id']}/children", as_=stranger).status == 404
    assert api.get(f"/jobs/{uuid.uuid4()}/children", as_=full).status == 404
    assert api.get("/jobs/not-a-job/children", as_=full).status == 404
    child_reader = make_token("child-reader", "flow:a=getJob")
    assert api.get(f"/jobs/{tree['id']}/children", as_=child_reader).status == 404


def test_a_job_outside_a_flow_has_no_children(api: Api, full: str) -> None:
    job = push(api, full, queue="flow:a")
    assert api.get(f"/jobs/{job['id']}/children", as_=full).body == {"children": []}


def test_getjobs_filters_and_stats_count_the_jobs_held_back(api: Api, full: str) -> None:
    tree = _flow(api, full, TREE).body
    listed = api.get("/queues/flow:root/jobs?state=waiting-children", as_=full).body["jobs"]
    assert [job["id"] for job in listed] == [tree["id"]]
    assert api.get("/queues/flow:root/jobs?state=waiting", as_=full).body["jobs"] == []
    counts = api.get("/queues/flow:b", as_=full).body["counts"]
    assert (counts["waiting-children"], counts["waiting"]) == (1, 0)


# -- end to end, with the engine settling parents -----------------------------------------


def _ack(api: Api, token: str, queue: str, result: Any = None) -> list[str]:
    """Pull and ack everything ready in ``queue``; the ids acked."""
    jobs = pull(api, token, queue=queue, count=100)
    for job in jobs:
        body = {"lease_id": job["lease_id"], "result": result}
        assert api.post(f"/jobs/{job['id']}/ack", body, as_=token).status == 200
    return [job["id"] for job in jobs]


def _state(job_id: str) -> str:
    return str(Job.objects.get(id=job_id).state)


def test_a_parent_runs_in_its_own_queue_once_its_children_complete(api: Api, full: str) -> None:
    tree = _flow(api, full, TREE).body
    middle = tree["children"][1]["id"]
    assert len(_ack(api, full, "flow:a")) == 2
    assert (_state(middle), _state(tree["id"])) == ("waiting-children", "waiting-children")
    assert len(_ack(api, full, "flow:c", result={"rows": 3})) == 2
    assert (_state(middle), _state(tree["id"])) == ("waiting", "waiting-children")
    assert _ack(api, full, "flow:b") == [middle]
    assert _state(tree["id"]) == "waiting"
    [root] = pull(api, full, queue="flow:root")
    assert root["id"] == tree["id"]
    children = api.get(f"/jobs/{tree['id']}/children", as_=full).body["children"]
    assert [c["state"] for c in children] == ["completed"] * 3
    assert children[2]["result"] == {"rows": 3}


def test_a_child_failing_for_good_fails_its_parent_and_cancels_the_rest(
    api: Api, full: str
) -> None:
    body = {"job": {"data": {}}, "children": [_leaf("flow:a"), _leaf("flow:b")]}
    tree = _flow(api, full, body).body
    [a] = pull(api, full, queue="flow:a")
    failed = {"lease_id": a["lease_id"], "retry": False}
    assert api.post(f"/jobs/{a['id']}/fail", failed, as_=full).status == 200
    root = api.get(f"/jobs/{tree['id']}", as_=full).body
    assert (root["state"], root["error_code"]) == ("failed", "child_failed")
    assert _state(tree["children"][1]["id"]) == "cancelled"


def test_a_node_may_ignore_its_childrens_failures(api: Api, full: str) -> None:
    body = {
        "job": {"data": {}},
        "children": [
            {**_leaf("flow:b"), "on_child_failure": "ignore", "children": [_leaf("flow:a")]}
        ],
    }
    tree = _flow(api, full, body).body
    middle = tree["children"][0]["id"]
    [a] = pull(api, full, queue="flow:a")
    failed = {"lease_id": a["lease_id"], "retry": False}
    assert api.post(f"/jobs/{a['id']}/fail", failed, as_=full).status == 200
    assert (_state(middle), _state(tree["id"])) == ("waiting", "waiting-children")

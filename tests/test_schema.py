from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.utils import timezone
from jsonschema import (
    Draft4Validator,
    Draft202012Validator,
)

from kernel import limits
from queues import flowspec, jobspec, services
from queues.api import queue_views, representations, serializers
from queues.models import Job, Queue
from security.access import Principal
from security.services import parse_rule, token_create

from .support import SETUP, Api

pytestmark = pytest.mark.django_db

ROUTES = {
    ("/api/v1/me", "get"),
    ("/api/v1/queues", "get"),
    ("/api/v1/queues/{queue}", "get"),
    ("/api/v1/queues/{queue}/pause", "post"),
    ("/api/v1/queues/{queue}/resume", "post"),
    ("/api/v1/queues/{queue}/rate-limit", "put"),
    ("/api/v1/queues/{queue}/rate-limit", "delete"),
    ("/api/v1/queues/{queue}/schema", "put"),
    ("/api/v1/queues/{queue}/schema", "delete"),
    ("/api/v1/queues/{queue}/concurrency", "put"),
    ("/api/v1/queues/{queue}/concurrency", "delete"),
    ("/api/v1/queues/{queue}/group-concurrency", "put"),
    ("/api/v1/queues/{queue}/group-concurrency", "delete"),
    ("/api/v1/queues/{queue}/jobs", "post"),
    ("/api/v1/queues/{queue}/jobs", "get"),
    ("/api/v1/queues/{queue}/jobs/batch", "post"),
    ("/api/v1/queues/{queue}/pull", "post"),
    ("/api/v1/jobs/ack", "post"),
    ("/api/v1/jobs/{job_id}", "get"),
    ("/api/v1/jobs/{job_id}", "patch"),
    ("/api/v1/jobs/{job_id}/wait", "get"),
    ("/api/v1/jobs/{job_id}/ack", "post"),
    ("/api/v1/jobs/{job_id}/fail", "post"),
    ("/api/v1/jobs/{job_id}/progress", "post"),
    ("/api/v1/jobs/{job_id}/cancel", "post"),
    ("/api/v1/jobs/{job_id}/retry", "post"),
    ("/api/v1/jobs/{job_id}/release", "post"),
    ("/api/v1/jobs/{job_id}/snooze", "post"),
    ("/api/v1/jobs/{job_id}/promote", "post"),
    ("/api/v1/queues/{queue}/retry-failed", "post"),
    ("/api/v1/queues/{queue}/clean", "post"),
    ("/api/v1/compliance/erasures", "post"),
    ("/api/v1/queues/{queue}/schedules", "get"),
    ("/api/v1/queues/{queue}/schedules/{name}", "put"),
    ("/api/v1/queues/{queue}/schedules/{name}", "get"),
    ("/api/v1/queues/{queue}/schedules/{name}", "delete"),
    ("/api/v1/queues/{queue}/schedules/{name}/pause", "post"),
    ("/api/v1/queues/{queue}/schedules/{name}/resume", "post"),
    ("/api/v1/queues/{queue}/schedules/{name}/trigger", "post"),
    ("/api/v1/queues/{queue}/flows", "post"),
    ("/api/v1/jobs/{job_id}/children", "get"),
    ("/api/v1/queues/{queue}/events", "get"),
    ("/api/v1/queues/{queue}/webhooks", "get"),
    ("/api/v1/queues/{queue}/webhooks/{name}", "put"),
    ("/api/v1/queues/{queue}/webhooks/{name}", "get"),
    ("/api/v1/queues/{queue}/webhooks/{name}", "delete"),
    ("/api/v1/queues/{queue}/webhooks/{name}/rotate-secret", "post"),
}


@pytest.fixture
def schema(api: Api) -> dict[str, Any]:
    response = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(response.json())


def test_the_schema_describes_every_route_with_its_error_responses(schema: dict[str, Any]) -> None:
    found = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert found == ROUTES
    for path, method in ROUTES:
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "401", "403"} <= set(responses), (path, method)
        assert set(responses["401"]["content"]) == {"application/problem+json"}
        assert "#/components/schemas/Problem" in str(responses["401"]["content"])
        assert schema["paths"][path][method]["security"] == [{"bearerAuth": []}]
    push = schema["paths"]["/api/v1/queues/{queue}/jobs"]["post"]
    assert {"200", "201", "413", "415"} <= set(push["responses"])
    assert "requestBody" in push
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    components = schema["components"]["schemas"]
    assert components["PushInRequest"]["properties"]["data"]["type"] == "object"
    jobs = components["PushBatchInRequest"]["properties"]["jobs"]
    assert (jobs["minItems"], jobs["maxItems"]) == (1, 1000)
    # Every field of an update is optional (at least one is required: a 400 says so).
    assert "requestBody" in schema["paths"]["/api/v1/jobs/{job_id}"]["patch"]
    update = components["UpdateInRequest"]["properties"]
    assert {"data", "priority", "run_at"} <= set(update)
    assert components["PushInRequest"]["additionalProperties"] is False
    assert components["PullInRequest"]["additionalProperties"] is False
    [queue_param] = schema["paths"]["/api/v1/queues/{queue}/pull"]["post"]["parameters"]
    assert re.fullmatch(queue_param["schema"]["pattern"], "jobs:email")
    assert not re.fullmatch(queue_param["schema"]["pattern"], "-bad")
    schedule = schema["paths"]["/api/v1/queues/{queue}/schedules/{name}"]["put"]
    assert {"200", "201", "400", "422"} <= set(schedule["responses"])
    [name_param] = [p for p in schedule["parameters"] if p["name"] == "name"]
    assert re.fullmatch(name_param["schema"]["pattern"], "nightly-report")
    assert not re.fullmatch(name_param["schema"]["pattern"], "-bad")
    assert components["ScheduleInRequest"]["additionalProperties"] is False
    assert {"next_run_at", "last_run_at", "last_job_id", "paused"} <= set(
        components["ScheduleOut"]["properties"]
    )
    [pattern_param] = schema["paths"]["/api/v1/queues/{queue}/clean"]["post"]["parameters"]
    assert re.fullmatch(pattern_param["schema"]["pattern"], "jobs:*")


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 to plain JSON Schema: ``nullable`` next to a type admits null."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def _component(schema: dict[str, Any], name: str, draft: Any) -> Any:
    """A validator for one component, its $refs resolved in the whole document."""
    components = _json_schema(schema["components"])
    return draft({"$ref": f"#/components/schemas/{name}", "components": components})


def test_the_schema_states_the_rules_of_storable_json(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    storable = components["StorableJson"]
    assert str(limits.MAX_DEPTH) in storable["description"]
    assert "lone surrogates" in storable["description"]
    assert "lone surrogates" in schema["info"]["description"]
    for body in ("PushInRequest", "UpdateInRequest"):
        data = components[body]["properties"]["data"]
        assert data["type"] == "object"
        assert data["propertyNames"] == {"pattern": "^[^\\u0000]*$"}
        assert data["patternProperties"] == {"\\u0000": {"not": {}}}
        assert data["additionalProperties"] == {"$ref": "#/components/schemas/StorableJson"}
    assert components["AckInRequest"]["properties"]["result"] == {
        "$ref": "#/components/schemas/StorableJson"
    }
    assert components["PushInRequest"]["properties"]["key"]["pattern"] == "^[^\\u0000]*$"
    assert components["PushInRequest"]["properties"]["tags"]["items"]["pattern"] == (
        "^[^\\u0000]*$"
    )


# Draft 4 is how OpenAPI 3.0 tools (schemathesis among them) read the document: they
# ignore propertyNames, so patternProperties must refuse NUL keys on its own.
@pytest.mark.parametrize("draft", [Draft4Validator, Draft202012Validator])
def test_the_schema_refuses_what_the_server_cannot_store(
    schema: dict[str, Any], draft: Any
) -> None:
    update = _component(schema, "UpdateInRequest", draft)
    assert update.is_valid({"data": {"a": {"b": ["x", 1, 2.5, None, True, {}]}, "c": None}})
    assert not update.is_valid({"data": {"a\x00": 1}})
    assert not update.is_valid({"data": {"a": {"b\x00": 1}}})
    assert not update.is_valid({"data": {"a": [{"\x00": 1}]}})
    assert not update.is_valid({"data": {"a": ["x\x00"]}})
    assert not update.is_valid({"data": []})
    assert not update.is_valid({"data": {}, "other": 1})
    push_batch = _component(schema, "PushBatchInRequest", draft)
    assert push_batch.is_valid({"jobs": [{"data": {"k": {"v": 1}}}]})
    assert not push_batch.is_valid({"jobs": [{"data": {"k": {"v\x00": 1}}}]})
    assert not push_batch.is_valid({"jobs": [{"data": {}, "key": "a\x00"}]})
    ack = _component(schema, "AckInRequest", draft)
    lease = str(uuid.uuid4())
    assert ack.is_valid({"lease_id": lease, "result": {"x": [1, None]}})
    assert not ack.is_valid({"lease_id": lease, "result": {"x\x00": 1}})


def test_batch_ack_says_each_id_appears_once(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/v1/jobs/ack"]["post"]
    assert "once" in operation["description"]
    jobs = schema["components"]["schemas"]["AckBatchInRequest"]["properties"]["jobs"]
    assert jobs["uniqueItems"] is True
    batch_ack = _component(schema, "AckBatchInRequest", Draft4Validator)
    item = {"id": str(uuid.uuid4()), "lease_id": str(uuid.uuid4())}
    assert batch_ack.is_valid({"jobs": [item]})
    assert not batch_ack.is_valid({"jobs": [item, item]})
    pull = _component(schema, "PullInRequest", Draft4Validator)
    assert pull.is_valid({"ack": [item]})
    assert not pull.is_valid({"ack": [item, item]})


def test_the_flow_body_and_answer_are_documented_as_trees(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    flow, child = components["FlowInRequest"], components["FlowChildInRequest"]
    assert set(flow["properties"]) == set(flowspec.ROOT_FIELDS)
    assert set(child["properties"]) == set(flowspec.CHILD_FIELDS)
    assert flow["additionalProperties"] is child["additionalProperties"] is False
    assert child["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/FlowChildInRequest"
    }
    assert components["FlowNodeOut"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/FlowNodeOut"
    }
    push = schema["paths"]["/api/v1/queues/{queue}/flows"]["post"]
    assert {"200", "201", "403", "409", "413", "422"} <= set(push["responses"])
    body = _component(schema, "FlowInRequest", Draft4Validator)
    leaf = {"queue": "q2", "job": {"data": {}}}
    assert body.is_valid({"job": {"data": {}}, "children": [{**leaf, "children": [leaf]}]})
    assert not body.is_valid({"job": {"data": {}}, "children": []})
    assert not body.is_valid({"job": {"data": {}}, "children": [{**leaf, "other": 1}]})
    assert not body.is_valid({"job": {"data": {}}, "children": [leaf], "on_child_failure": "x"})
    children = schema["paths"]["/api/v1/jobs/{job_id}/children"]["get"]
    assert children["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobChildrenOut"
    }
    read = components["JobReadOut"]["properties"]
    assert {"parent", "depends_on"} <= set(read)
    assert "waiting-children" in str(components["FlowNodeOut"]["properties"]["state"])


def test_a_queue_schema_is_documented_as_the_object_it_must_be(schema: dict[str, Any]) -> None:
    """Found by schemathesis: an array was schema-valid and refused with 400."""
    components = schema["components"]["schemas"]
    assert components["SchemaInRequest"]["properties"]["schema"]["type"] == "object"
    assert components["QueueOut"]["properties"]["schema"]["type"] == "object"
    schema_in = _component(schema, "SchemaInRequest", Draft4Validator)
    assert schema_in.is_valid({"schema": {"type": "object"}})
    assert not schema_in.is_valid({"schema": [None, None]})


def test_the_cursor_parameter_states_the_cursor_format(schema: dict[str, Any]) -> None:
    parameters = schema["paths"]["/api/v1/queues/{queue}/jobs"]["get"]["parameters"]
    [cursor] = [p for p in parameters if p["name"] == "cursor"]
    assert cursor["in"] == "query"
    pattern = cursor["schema"]["pattern"]
    issued = queue_views._encode_cursor(uuid.uuid4())
    assert re.search(pattern, issued)
    for bad in ("", "a" * 21, "a" * 23, "a" * 21 + "=", "a" * 21 + "+"):
        assert not re.search(pattern, bad), bad


def test_the_docs_page_is_served_without_a_token(api: Api) -> None:
    response = api.client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def _job() -> Job:
    queue = Queue.objects.create(name="q")
    # Held (active): only a job that holds a lease shows its holder the lease_id.
    return Job.objects.create(
        queue=queue, data={}, state="active", lease_id=uuid.uuid4(), lease_owner="token:1"
    )


def test_documented_shapes_match_what_the_api_returns() -> None:
    job, now = _job(), timezone.now()
    assert set(serializers.PushIn().fields) == set(jobspec.FIELDS)
    assert set(serializers.BackoffDoc().fields) == set(jobspec.BACKOFF_FIELDS)
    assert set(serializers.JobSummaryOut().fields) == set(
        representations.job_summary(job, "q", now)
    )
    assert set(serializers.LeasedJobOut().fields) == set(representations.job_leased(job, "q"))
    holder = Principal(name="t", rules=(), token_id=1)
    assert set(serializers.JobDetailOut().fields) == set(
        representations.job_detail(job, holder, now)
    )
    assert set(serializers.QueueOut().fields) == set(representations.queue_summary(job.queue))
    assert set(serializers.JobReadOut().fields) == set(
        representations.job_read(job, holder, now, parent=None, depends_on=[])
    )
    node = services.FlowJob(job, "q")
    assert set(serializers.FlowNodeOut().fields) == set(representations.flow_tree(node, now))


# -- 429 (and 503) with Retry-After, wherever they can answer -----------------------------


def _concrete(path: str) -> str:
    return path.replace("{queue}", "q").replace("{job_id}", str(uuid.uuid4()))


def test_every_operation_documents_429_with_retry_after(schema: dict[str, Any]) -> None:
    for path, method in ROUTES:
        responses = schema["paths"][path][method]["responses"]
        assert "429" in responses, (path, method)
        refused = responses["429"]
        assert refused["headers"]["Retry-After"]["required"] is True, (path, method)
        assert refused["headers"]["Retry-After"]["schema"]["type"] == "integer"
        assert refused["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/ProblemOut"
        }
        assert responses["503"]["headers"]["Retry-After"]["required"] is True, (path, method)


def test_the_pull_documents_retry_after_past_the_long_poll_cap(schema: dict[str, Any]) -> None:
    answered = schema["paths"]["/api/v1/queues/{queue}/pull"]["post"]["responses"]["200"]
    assert answered["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "long poll" in answered["headers"]["Retry-After"]["description"]


def _assert_documented_429(schema: dict[str, Any], response: Any, route: tuple[str, str]) -> None:
    assert response.status_code == 429, (route, response.status_code)
    assert int(response["Retry-After"]) >= 1, route
    assert response["Content-Type"] == "application/problem+json"
    problem = _component(schema, "ProblemOut", Draft4Validator)
    assert problem.is_valid(response.json()), response.json()


def test_every_route_throttled_for_failed_authentication_answers_the_documented_429(
    api: Api, schema: dict[str, Any], settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "1/60s"
    wrong: dict[str, Any] = {"HTTP_AUTHORIZATION": "Bearer fq_wrong", "REMOTE_ADDR": "198.51.100.9"}
    assert api.client.get("/api/v1/me", **wrong).status_code == 401  # the one allowed
    for path, method in sorted(ROUTES):
        response = api.client.generic(
            method.upper(), _concrete(path), "{}", content_type="application/json", **wrong
        )
        _assert_documented_429(schema, response, (path, method))


def test_a_token_over_its_rate_answers_the_documented_429(api: Api, schema: dict[str, Any]) -> None:
    _, token = token_create(
        name="rated", rules=[parse_rule("*=*", allow=True)], rate_limit="1/60s", actor=SETUP
    )
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert api.client.get("/api/v1/me", **auth).status_code == 200
    response = api.client.get("/api/v1/me", **auth)
    _assert_documented_429(schema, response, ("/api/v1/me", "get"))
    assert response["RateLimit-Remaining"] == "0"


def test_the_event_stream_is_documented_as_server_sent_events(schema: dict[str, Any]) -> None:
    events = schema["paths"]["/api/v1/queues/{queue}/events"]["get"]
    assert events["operationId"] == "subscribeEvents"
    assert set(events["responses"]["200"]["content"]) == {"text/event-stream"}
    assert "Last-Event-ID" in {p["name"] for p in events["parameters"]}
    for documented in ("reset", "heartbeat", "job_id", "error_code", "Retry-After"):
        assert documented in events["description"]

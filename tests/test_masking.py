"""Sensitive fields are masked in getJob/getJobs (and every answer that shows a job)
unless the token may getJob and has an explicit reveal grant on the queue; workers get
them unmasked in pull; they never reach the audit trail."""

from __future__ import annotations

import json

import pytest

from compliance.models import AuditEvent
from queues.models import Queue

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db

SECRET = {"userId": "u1", "ssn": "078-05-1120", "profile": {"Password": "hunter2"}, "n": 1}


def test_sensitive_fields_are_masked_without_an_explicit_reveal(api: Api) -> None:
    producer = make_token("producer", "jobs:*=push,getJob,getJobs")
    revealer = make_token("revealer", "jobs:*=getJob,reveal")
    wildcard = make_token("wildcard", "*=*")  # "*" never includes reveal
    worker = make_token("worker", "jobs:*=pull")
    job = push(api, producer, queue="jobs:q", data=SECRET)
    for token in (producer, wildcard):
        body = api.get(f"/jobs/{job['id']}", as_=token).body
        assert body["data"] == {
            "userId": "u1",
            "ssn": "[MASKED]",
            "profile": {"Password": "[MASKED]"},
            "n": 1,
        }
    listed = api.get("/queues/jobs:q/jobs", as_=producer).body["jobs"][0]
    assert listed["data"]["ssn"] == "[MASKED]"
    assert api.get(f"/jobs/{job['id']}", as_=revealer).body["data"] == SECRET
    [leased] = pull(api, worker, queue="jobs:q")
    assert leased["data"] == SECRET  # workers need the real values
    trail = json.dumps(list(AuditEvent.objects.values("details", "job_ids")))
    assert "078-05-1120" not in trail and "hunter2" not in trail


FREE_TEXT = "password=hunter2 ssn=078-05-1120"


def _failed_with_progress(api: Api, queue: str, **codes: str) -> str:
    """A job whose worker reported progress with a message, then failed it with a text
    (and ``code=...`` if given); its id."""
    producer = make_token("pusher", f"{queue}=push")
    worker = make_token("runner", f"{queue}=pull,fail,progress")
    job = push(api, producer, queue=queue, data={"n": 1})
    [leased] = pull(api, worker, queue=queue)
    lease = {"lease_id": leased["lease_id"]}
    body = {**lease, "progress": 30, "message": FREE_TEXT}
    assert api.post(f"/jobs/{job['id']}/progress", body, as_=worker).status == 200
    failed = api.post(f"/jobs/{job['id']}/fail", {**lease, "error": FREE_TEXT, **codes}, as_=worker)
    assert failed.status == 200
    # The worker's own answer shows the job too: it has no reveal either.
    assert (failed.body["error"], failed.body["progress_message"]) == ("[MASKED]", "[MASKED]")
    return str(job["id"])


def test_worker_free_texts_are_masked_without_an_explicit_reveal(api: Api) -> None:
    job_id = _failed_with_progress(api, "jobs:q")
    reader = make_token("reader", "jobs:*=getJob,getJobs")
    wildcard = make_token("wildcard", "*=*")  # "*" never includes reveal
    revealer = make_token("revealer", "jobs:*=getJob,reveal")
    listed = api.get("/queues/jobs:q/jobs", as_=reader).body["jobs"]
    for body in [api.get(f"/jobs/{job_id}", as_=token).body for token in (reader, wildcard)]:
        for shown in (body, *listed):
            assert (shown["error"], shown["progress_message"]) == ("[MASKED]", "[MASKED]")
            assert [(e["attempt"], e["error"]) for e in shown["errors"]] == [(1, "[MASKED]")]
            assert "hunter2" not in json.dumps(shown)
    clear = api.get(f"/jobs/{job_id}", as_=revealer).body
    assert (clear["error"], clear["progress_message"]) == (FREE_TEXT, FREE_TEXT)
    assert clear["errors"][0]["error"] == FREE_TEXT


def test_failure_codes_are_shown_to_every_reader(api: Api) -> None:
    job_id = _failed_with_progress(api, "jobs:q", code="ValueError")
    reader = make_token("reader", "jobs:*=getJob")
    revealer = make_token("revealer", "jobs:*=getJob,reveal")
    for token in (reader, revealer):
        body = api.get(f"/jobs/{job_id}", as_=token).body
        assert body["error_code"] == body["errors"][0]["code"] == "ValueError"


def test_free_texts_are_masked_even_where_no_field_is_sensitive(api: Api) -> None:
    job_id = _failed_with_progress(api, "plain")
    Queue.objects.filter(name="plain").update(sensitive_fields=[])
    reader = make_token("reader", "plain=getJob")
    body = api.get(f"/jobs/{job_id}", as_=reader).body
    assert (body["error"], body["progress_message"]) == ("[MASKED]", "[MASKED]")


def test_an_empty_text_stays_empty_so_triage_sees_there_was_none(api: Api) -> None:
    producer = make_token("producer", "jobs:*=push,getJob")
    worker = make_token("worker", "jobs:*=pull,fail")
    job = push(api, producer, queue="jobs:q")
    fresh = api.get(f"/jobs/{job['id']}", as_=producer).body
    assert (fresh["error"], fresh["errors"], fresh["progress_message"]) == ("", [], "")
    [leased] = pull(api, worker, queue="jobs:q")
    fail = api.post(f"/jobs/{job['id']}/fail", {"lease_id": leased["lease_id"]}, as_=worker)
    assert fail.status == 200
    body = api.get(f"/jobs/{job['id']}", as_=producer).body
    assert body["error"] == "" and [e["error"] for e in body["errors"]] == [""]
    assert body.get("error_code") == "" and body["errors"][0].get("code") == ""

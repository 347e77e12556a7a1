"""Sensitive fields are masked in getJob/getJobs (and every answer that shows a job)
unless the token may getJob and has an explicit reveal grant on the queue; workers get
them unmasked in pull; they never reach the audit trail."""

from __future__ import annotations

import json

import pytest

from compliance.models import AuditEvent

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

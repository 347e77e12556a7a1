"""A batch push's JSON columns (backoff, tags) go into COPY as orjson's text where
orjson agrees with the json module, and as the json module's text otherwise
(queues.bulkinsert._json): the same value is stored, or the same value is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from queues.bulkinsert import _json
from queues.models import Job

from .jsonvalues import json_values, typed
from .support import Api


@given(json_values(lone_surrogates=True))
def test_the_text_reads_back_as_the_json_module_s_does(value: Any) -> None:
    assert typed(json.loads(_json(value))) == typed(json.loads(json.dumps(value)))


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, {"s": "\ud800"}, {1: "int key"}, ["\udfff"]],
    ids=["past-uint64", "past-int64", "lone-high", "int-key", "lone-low"],
)
def test_what_orjson_refuses_is_the_json_module_s_text(value: Any) -> None:
    assert _json(value) == json.dumps(value)


@pytest.mark.django_db
def test_tags_and_backoff_of_a_batch_are_stored_as_pushed(api: Api, full: str) -> None:
    backoff = {"type": "fixed", "delay": 250, "jitter": 0.5}
    tags = ["é😀", 'q"uote', "tab\tand\\slash"]
    jobs = [{"data": {}, "tags": tags, "backoff": backoff}, {"data": {}}]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 201, call.body
    stored = Job.objects.get(id=call.body["jobs"][0]["id"])
    assert stored.tags == tags
    assert {key: stored.backoff[key] for key in backoff} == backoff
    assert type(stored.backoff["jitter"]) is float and type(stored.backoff["delay"]) is int

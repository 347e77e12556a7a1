"""A pushed job's data is encoded once, for its size check and its sealing alike, and
the hand-built INSERT values are exactly what Django's field converters would send."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

import security.encryption
from compliance.audit.models import AuditEvent
from kernel.rows import insert_columns, insert_params
from queues import jobspec
from queues.models import Job, Queue
from security.encryption import dump
from security.fields import Dumped

from .support import Api, postgres_only, push

pytestmark = pytest.mark.django_db

DATA = {"to": "a@example.com", "n": 3, "é": [1.5, None, True]}


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every value JSON-encoded for sizing or sealing, in order."""
    seen: list[Any] = []
    real_dump, real_size = security.encryption._DUMP, jobspec.encoded_size

    def spy_dump(value: Any) -> str:
        seen.append(value)
        return real_dump(value)

    def spy_size(value: object) -> int:
        seen.append(value)
        return real_size(value)

    monkeypatch.setattr(security.encryption, "_DUMP", spy_dump)
    monkeypatch.setattr(jobspec, "encoded_size", spy_size)
    return seen


@pytest.mark.parametrize("fields", [{}, {"key": "once"}])
def test_a_pushed_jobs_data_is_encoded_once(
    api: Api, full: str, encodings: list[Any], fields: dict[str, Any]
) -> None:
    job = push(api, full, data=DATA, **fields)
    assert [value for value in encodings if value == DATA] == [DATA]
    assert Job.objects.get(id=job["id"]).data == DATA


def test_a_batchs_data_is_encoded_once_a_job(api: Api, full: str, encodings: list[Any]) -> None:
    jobs = [{"data": {**DATA, "i": i}} for i in range(3)]
    assert api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full).status == 201
    assert sorted(value["i"] for value in encodings if "i" in value) == [0, 1, 2]
    assert sorted(job.data["i"] for job in Job.objects.all()) == [0, 1, 2]


def test_a_dumped_value_reads_as_itself_and_is_sealed_from_its_bytes() -> None:
    queue = Queue.objects.create(name="q")
    job = Job(queue=queue, data=Dumped(DATA, dump(DATA)))
    assert job.data == DATA
    job.save()
    job.data["added"] = 1  # changed in place once written: sealed anew, not from the bytes
    job.save()
    assert Job.objects.get(id=job.id).data == {**DATA, "added": 1}


def _converted(obj: Any) -> list[Any]:
    """The values Django's own converters give, as ``save()`` sends them."""
    fields, _ = insert_columns(obj.__class__)
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]


def _comparable(value: Any) -> Any:
    # A sealed value differs by its nonce; compare its length. psycopg's Jsonb by its obj.
    if isinstance(value, bytes):
        return ("sealed", len(value))
    return (type(value), getattr(value, "obj", value))


@postgres_only
def test_hand_built_values_are_the_converters_values(api: Api, full: str) -> None:
    job = Job.objects.get(id=push(api, full, data=DATA, priority=-5, tags=["t"], key="k")["id"])
    job.lease_expires_at = job.created_at
    event = AuditEvent.objects.order_by("-id")[0]
    objs: list[Job | AuditEvent] = [job, event]
    for obj in objs:
        obj._state.adding = True
        fast, slow = insert_params(obj), _converted(obj)
        assert [_comparable(v) for v in fast] == [_comparable(v) for v in slow]

"""Erasure changes job rows only, and that loses nothing: no job payload or subject ever
reaches the audit trail, django-auditlog's history or django-q2's rows. Proved by
construction: each path a job can take is driven through the real API, commands and
scheduled tasks with distinctive markers in every client-written field, then every row
of those tables (each column, raw and as the ORM decodes it) is searched for them.
Erasure itself never rewrites those tables (it used to: erasing "deny" rewrote the
recorded history of permission rules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.db import connection, models
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from django_q.tasks import async_task

from compliance.erasure import OTHER_STORES
from compliance.models import AuditEvent, ErasureRequest, RetentionPolicy
from compliance.retention import retention_policy_save
from queues.models import Job

from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db

SUBJECT = "subj-Qx7Kw2Zr"
MARK = "mark-Vn3Jp8Ls"
QUEUE = "stores:q"
ERASURES = "/api/v1/compliance/erasures"


def _rows(model: type[models.Model]) -> Iterator[str]:
    """Each row of the model's table as text: every column as stored, and every field
    as the ORM decodes it (django-q2 pickles and signs its arguments and results)."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        for row in cursor.fetchall():
            yield repr(row)
    for obj in model._default_manager.all():
        yield repr({f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields})
        if isinstance(obj, OrmQ):
            yield repr(obj.task)  # the signed package, unpacked


def _other_stores() -> str:
    """Every row of the stores erasure leaves alone (Success and Failure are Task)."""
    return "\n".join(
        text for model in (AuditEvent, LogEntry, Task, OrmQ, Schedule) for text in _rows(model)
    )


def _assert_no_marker_outside_jobs() -> None:
    found = _other_stores()
    assert MARK not in found
    assert SUBJECT not in found


@pytest.fixture
def eraser(db: None) -> str:
    return make_token("stores-eraser", "*=erase")


@pytest.fixture
def token(db: None, monkeypatch: pytest.MonkeyPatch) -> str:
    # django-q2 runs tasks in-process, in the test's transaction, and stores their
    # Task rows as qcluster would; setup_schedules writes its Schedule rows.
    monkeypatch.setattr(Conf, "SYNC", True)
    call_command("setup_schedules", stdout=StringIO())
    return make_token("stores-full", "*=*,admin,reveal")


def _job(**extra: Any) -> dict[str, Any]:
    """A push body with a marker in every field a client writes."""
    return {
        "data": {"userId": SUBJECT, "note": MARK, MARK: [MARK]},
        "key": f"key-{MARK}-{extra.pop('n', 0)}",
        "tags": [f"tag-{MARK}"],
        **extra,
    }


def _pushed(api: Api, token: str, **extra: Any) -> dict[str, Any]:
    return push(api, token, queue=QUEUE, **_job(**extra))


def _leased(api: Api, token: str, **extra: Any) -> dict[str, Any]:
    job = _pushed(api, token, **extra)
    [leased] = pull(api, token, queue=QUEUE)
    assert leased["id"] == job["id"]
    return leased


def _ok(call: Any) -> Any:
    assert call.status in (200, 201), call.body
    return call.body


def _age(job_id: str, days: int = 40) -> None:
    """Test set-up: the job finished long ago (retention and clean act on old jobs)."""
    Job.objects.filter(id=job_id).update(finished_at=timezone.now() - timedelta(days=days))


def _push_single(api: Api, token: str) -> None:
    _pushed(api, token)
    _pushed(api, token, subject=SUBJECT, n=1)


def _push_batch(api: Api, token: str) -> None:
    jobs = [_job(n=1), _job(n=2, subject=SUBJECT)]
    _ok(api.post(f"/queues/{QUEUE}/jobs/batch", {"jobs": jobs}, as_=token))


def _update(api: Api, token: str) -> None:
    job = _pushed(api, token)
    _ok(api.patch(f"/jobs/{job['id']}", {"data": {"note": f"new {MARK}"}}, as_=token))


def _progress(api: Api, token: str) -> None:
    job = _leased(api, token)
    body = {"lease_id": job["lease_id"], "progress": 50, "message": f"half {MARK}"}
    _ok(api.post(f"/jobs/{job['id']}/progress", body, as_=token))


def _fail_and_retry(api: Api, token: str) -> None:
    job = _leased(api, token, max_attempts=3)
    body = {"lease_id": job["lease_id"], "error": f"boom {MARK}", "retry": True, "delay": 0}
    _ok(api.post(f"/jobs/{job['id']}/fail", body, as_=token))


def _fail_exhausted_then_retried(api: Api, token: str) -> None:
    job = _leased(api, token, max_attempts=1)
    body = {"lease_id": job["lease_id"], "error": f"last {MARK}"}
    _ok(api.post(f"/jobs/{job['id']}/fail", body, as_=token))
    assert Job.objects.get(id=job["id"]).state == "failed"
    _ok(api.post(f"/jobs/{job['id']}/retry", as_=token))


def _ack(api: Api, token: str) -> None:
    job = _leased(api, token)
    body = {"lease_id": job["lease_id"], "result": {"to": SUBJECT, "note": MARK}}
    _ok(api.post(f"/jobs/{job['id']}/ack", body, as_=token))


def _ack_batch_and_piggy_backed(api: Api, token: str) -> None:
    first = _leased(api, token, n=1)
    item = {"id": first["id"], "lease_id": first["lease_id"], "result": {"r": MARK}}
    _ok(api.post("/jobs/ack", {"jobs": [item]}, as_=token))
    second = _leased(api, token, n=2)
    _pushed(api, token, n=3)
    item = {"id": second["id"], "lease_id": second["lease_id"], "result": {"r": MARK}}
    _ok(api.post(f"/queues/{QUEUE}/pull", {"ack": [item]}, as_=token))


def _cancel(api: Api, token: str) -> None:
    job = _pushed(api, token)
    _ok(api.post(f"/jobs/{job['id']}/cancel", as_=token))


def _reads(api: Api, token: str) -> None:
    job = _pushed(api, token)
    _ok(api.get(f"/jobs/{job['id']}", as_=token))
    _ok(api.get(f"/queues/{QUEUE}/jobs", as_=token))


def _clean(api: Api, token: str) -> None:
    job = _leased(api, token)
    _ok(api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=token))
    _ok(api.post(f"/queues/{QUEUE}/clean", {"grace_ms": 0, "state": "completed"}, as_=token))
    assert not Job.objects.filter(id=job["id"]).exists()


def _sweep(api: Api, token: str) -> None:
    """A lease that runs out (recovered) and a job past its ttl (expired), by the
    scheduler's own task."""
    job = _leased(api, token, n=1)
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now())
    expiring = _pushed(api, token, n=2, ttl=60_000)
    Job.objects.filter(id=expiring["id"]).update(expires_at=timezone.now())
    async_task("compliance.tasks.sweep_leases", sync=True)
    assert Task.objects.filter(func="compliance.tasks.sweep_leases", success=True).exists()
    assert Job.objects.get(id=job["id"]).state == "waiting"
    assert Job.objects.get(id=expiring["id"]).state == "expired"


def _retention(api: Api, token: str) -> None:
    # Its own policy: the default ones are data that a transactional test may flush.
    policy = RetentionPolicy(queue_pattern="stores:*", target="completed", max_age_days=7)
    retention_policy_save(policy=policy, actor=SETUP)
    job = _leased(api, token)
    _ok(api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=token))
    _age(job["id"])
    async_task("compliance.tasks.run_retention", sync=True)
    assert Task.objects.filter(func="compliance.tasks.run_retention", success=True).exists()
    assert not Job.objects.filter(id=job["id"]).exists()


def _erasure(api: Api, token: str) -> None:
    eraser = make_token("stores-dsr", "*=erase")
    _fail_and_retry(api, token)
    _pushed(api, token, subject=SUBJECT, n=1)
    _ok(api.post(ERASURES, {"subject": SUBJECT}, as_=eraser))
    done = _ok(
        api.post(ERASURES, {"subject": SUBJECT, "execute": True, "reason": "DSR"}, as_=eraser)
    )
    assert done["total"] == 2 and done["other_stores"] == OTHER_STORES
    _pushed(api, token, subject=SUBJECT, n=5)
    call_command("gdpr_erase", SUBJECT, stdout=StringIO())
    call_command(
        "gdpr_erase", SUBJECT, "--execute", "--mode", "delete", "--reason", "DSR", stdout=StringIO()
    )
    assert ErasureRequest.objects.count() == 2


def _refused(api: Api, token: str) -> None:
    """Refusals are audited with their field paths, cut where client-chosen keys begin."""
    card = {"userId": SUBJECT, MARK: {SUBJECT: "4111 1111 1111 1111"}}
    call = api.post(f"/queues/{QUEUE}/jobs", {"data": card}, as_=token)
    assert call.status == 422, call.body
    call = api.post(f"/queues/{QUEUE}/jobs/batch", {"jobs": [{"data": card}]}, as_=token)
    assert call.status == 422, call.body
    call = api.post(f"/queues/{QUEUE}/jobs", {"data": {}, MARK: SUBJECT}, as_=token)
    assert call.status == 400, call.body
    job = _leased(api, token)
    body = {"lease_id": job["lease_id"], "result": {MARK: "4111 1111 1111 1111"}}
    assert api.post(f"/jobs/{job['id']}/ack", body, as_=token).status == 422


PATHS: dict[str, Callable[[Api, str], None]] = {
    "refused push, batch push and ack": _refused,
    "push": _push_single,
    "push batch": _push_batch,
    "update": _update,
    "progress": _progress,
    "fail with retry": _fail_and_retry,
    "fail exhausting attempts, then retry": _fail_exhausted_then_retried,
    "ack": _ack,
    "batch ack and ack piggy-backed on pull": _ack_batch_and_piggy_backed,
    "cancel": _cancel,
    "getJob (with reveal) and getJobs": _reads,
    "clean": _clean,
    "lease recovery and ttl expiry (sweep)": _sweep,
    "retention cleanup": _retention,
    "erasure: dry run and execute, redact and delete": _erasure,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_no_payload_or_subject_reaches_the_audit_history_or_scheduler_tables(
    api: Api, token: str, path: str
) -> None:
    PATHS[path](api, token)
    # Sealed events too: the chain's columns are searched as well.
    async_task("compliance.tasks.seal_audit", sync=True)
    assert AuditEvent.objects.exists() and LogEntry.objects.exists()
    assert Schedule.objects.exists()
    _assert_no_marker_outside_jobs()


def test_the_scan_finds_a_marker_wherever_it_is_stored(api: Api, token: str) -> None:
    """The search above is not blind: it finds the markers in decoded job rows, in a
    django-q2 task's pickled arguments and in django-auditlog's history."""
    _ack(api, token)
    assert MARK in "\n".join(_rows(Job)) and SUBJECT in "\n".join(_rows(Job))
    async_task("builtins.print", MARK, sync=True)
    Conf.SYNC = False  # monkeypatched back: queued, not run, so an OrmQ row
    async_task("builtins.print", SUBJECT)
    make_token(f"named-{MARK}", "x=push")
    assert MARK in "\n".join(_rows(Task)) and MARK in "\n".join(_rows(LogEntry))
    assert SUBJECT in "\n".join(_rows(OrmQ))


def _history() -> list[str]:
    return list(_rows(LogEntry))


#: Columns the sealer fills in after an event is written (compliance.audit.chain).
_SEALING = frozenset({"seq", "prev_hash", "hash", "sealed_at", "key_id"})


def _trail() -> dict[int, str]:
    return {
        row["id"]: repr({k: v for k, v in row.items() if k not in _SEALING})
        for row in AuditEvent.objects.values()
    }


@pytest.mark.parametrize("subject", ["deny", "stores-victim", "allow", "push"])
def test_erasing_any_string_leaves_the_model_history_as_it_was(
    api: Api, eraser: str, subject: str
) -> None:
    """The reported attack: erasing the "subject" deny (or a token's name) rewrote the
    django-auditlog history of permission rules to [REDACTED], with total 0."""
    make_token("stores-victim", "a:*=push", deny=("b:*=*",))
    push(api, make_token("stores-pusher", "*=push"), queue=QUEUE, data={"userId": "u-1"})
    history, trail = _history(), _trail()
    jobs = list(_rows(Job))
    body = {"subject": subject, "execute": True, "reason": "DSR 1"}
    answer = _ok(api.post(ERASURES, body, as_=eraser))
    assert answer["total"] == 0
    call_command("gdpr_erase", subject, "--execute", "--reason", "DSR 2", stdout=StringIO())
    assert _history() == history
    assert list(_rows(Job)) == jobs
    # The trail only grew: its earlier events are as they were.
    assert {k: v for k, v in _trail().items() if k in trail} == trail


def test_a_subject_matching_no_job_changes_nothing_but_records_the_request(
    api: Api, eraser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Conf, "SYNC", True)
    async_task("builtins.print", "unrelated", sync=True)
    push(api, make_token("stores-pusher", "*=push"), queue=QUEUE, data={"userId": "u-1"})
    before = {model: list(_rows(model)) for model in (Job, LogEntry, Task, OrmQ, Schedule)}
    events = AuditEvent.objects.count()
    preview = _ok(api.post(ERASURES, {"subject": SUBJECT}, as_=eraser))
    body = {"subject": SUBJECT, "execute": True, "reason": "DSR 3"}
    done = _ok(api.post(ERASURES, body, as_=eraser))
    assert preview["total"] == done["total"] == 0
    assert {model: list(_rows(model)) for model in before} == before
    assert AuditEvent.objects.count() == events + 2  # the preview and the erasure
    receipt = ErasureRequest.objects.get()
    assert (receipt.total, receipt.counts, receipt.pk) == (0, {}, done["receipt_id"])

"""Job payloads at rest: AES-256-GCM per value, bound to the job and field. These tests
read the database with raw SQL looking for plaintext, move and alter ciphertext, drop
keys, rotate them, and check that nothing decrypted leaks into errors, logs or the
audit trail."""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from hypothesis import given

from compliance.models import AuditEvent
from queues import services
from queues.models import Job
from security.encryption import (
    NONCE_BYTES,
    DecryptionFailed,
    generate_key,
    key_id_of,
    keyring,
    parse_keyring,
    seal,
    unseal,
)
from security.fields import Sealed

from .jsonvalues import json_values, typed
from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db

MARK = "plaintext-marker-7f3a"  # must never be found in the database or the logs
K1, K2 = f"k1:{generate_key()}", f"k2:{generate_key()}"


def _raw_row(job_id: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM queues_job WHERE id = %s", [_db_id(job_id)])
        columns = [column[0] for column in cursor.description]
        return dict(zip(columns, cursor.fetchone(), strict=True))


def _db_id(job_id: str) -> Any:
    """The id as this database stores it (uuid on PostgreSQL, 32 hex chars on SQLite)."""
    value = uuid.UUID(job_id)
    return value if connection.vendor == "postgresql" else value.hex


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value)
    return str(value).encode()


def _every_stored_byte() -> bytes:
    """Every value of every row of every table of the database, as bytes."""
    found: list[bytes] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                found.extend(_as_bytes(value) for value in row)
    return b"\x00".join(found)


def _set_raw(job_id: str, column: str, value: bytes) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE queues_job SET {column} = %s WHERE id = %s",  # noqa: S608
            [value, _db_id(job_id)],
        )


def _cycle(api: Api, token: str, queue: str = "jobs:enc") -> dict[str, Any]:
    """A job pushed, failed once (retry), pulled again and acked with a result."""
    job = push(api, token, queue=queue, data={"userId": "u-42", "note": MARK}, key="k-1")
    [leased] = pull(api, token, queue=queue)
    lease = {"lease_id": leased["lease_id"]}
    call = api.post(f"/jobs/{job['id']}/fail", {**lease, "error": f"boom {MARK}"}, as_=token)
    assert call.status == 200, call.body
    Job.objects.filter(id=job["id"]).update(run_at=Job.objects.get(id=job["id"]).created_at)
    [leased] = pull(api, token, queue=queue)
    call = api.post(
        f"/jobs/{job['id']}/ack", {"lease_id": leased["lease_id"], "result": {"r": MARK}}, as_=token
    )
    assert call.status == 200, call.body
    return job


# -- what is stored ----------------------------------------------------------------------


def test_no_plaintext_of_a_payload_anywhere_in_the_database(api: Api, full: str) -> None:
    job = _cycle(api, full)
    batch = [{"data": {"userId": f"u{i}", "note": MARK}} for i in range(5)]
    assert api.post("/queues/jobs:enc/jobs/batch", {"jobs": batch}, as_=full).status == 201
    assert MARK.encode() not in _every_stored_byte()
    # ... and every value still reads back through the API.
    revealer = make_token("revealer", "*=getJob,reveal")  # error texts are masked without
    body = api.get(f"/jobs/{job['id']}", as_=revealer).body
    assert body["data"] == {"userId": "u-42", "note": MARK}
    assert body["result"] == {"r": MARK}
    assert body["error"] == f"boom {MARK}"
    assert [entry["error"] for entry in body["errors"]] == [f"boom {MARK}"]
    listed = api.get("/queues/jobs:enc/jobs?state=waiting", as_=full).body["jobs"]
    assert sorted(item["data"]["userId"] for item in listed) == [f"u{i}" for i in range(5)]


def test_a_stored_value_is_version_key_id_nonce_ciphertext_and_tag(api: Api, full: str) -> None:
    data = {"userId": "u1", "note": MARK}
    first = push(api, full, queue="jobs:enc", data=data)
    second = push(api, full, queue="jobs:enc", data=data)
    one, two = (_as_bytes(_raw_row(job["id"])["data"]) for job in (first, second))
    key_id = keyring().primary
    assert one[0] == 1 and one[1] == len(key_id) and one[2 : 2 + len(key_id)].decode() == key_id
    plain = len(json.dumps(data, separators=(",", ":")))
    assert len(one) == 2 + len(key_id) + NONCE_BYTES + plain + 16
    assert one[: 2 + len(key_id)] == two[: 2 + len(key_id)]
    assert one[2 + len(key_id) :] != two[2 + len(key_id) :]  # a fresh random nonce each time
    row = _raw_row(first["id"])
    assert row["result"] is None and row["error"] is None and row["errors"] is None


def test_subject_and_idempotency_key_stay_queryable(api: Api, full: str) -> None:
    job = push(api, full, queue="jobs:enc", data={"userId": "u-7", "n": 1}, key="order-7")
    assert list(Job.objects.filter(subject="u-7").values_list("id", flat=True)) == [
        uuid.UUID(job["id"])
    ]
    again = api.post("/queues/jobs:enc/jobs", {"data": {"n": 2}, "key": "order-7"}, as_=full)
    assert again.status == 200 and again.body["id"] == job["id"]


def test_payload_columns_cannot_be_written_in_clear_or_searched(api: Api, full: str) -> None:
    job = push(api, full, queue="jobs:enc", data={"n": 1})
    with pytest.raises(TypeError, match="encrypted"), transaction.atomic():
        Job.objects.filter(id=job["id"]).update(data={"note": MARK})
    with pytest.raises(TypeError, match="encrypted"), transaction.atomic():
        list(Job.objects.filter(data={"n": 1}))
    assert MARK.encode() not in _every_stored_byte()


# -- moved, altered, unknown keys ---------------------------------------------------------


def test_a_value_copied_to_another_job_or_field_does_not_decrypt(api: Api, full: str) -> None:
    first = push(api, full, queue="jobs:enc", data={"secret": MARK})
    second = push(api, full, queue="jobs:enc", data={"n": 2})
    stolen = _as_bytes(_raw_row(first["id"])["data"])
    _set_raw(second["id"], "data", stolen)
    with pytest.raises(DecryptionFailed) as caught:
        Job.objects.get(id=second["id"]).data  # noqa: B018
    assert second["id"] in str(caught.value) and "data" in str(caught.value)
    assert MARK not in str(caught.value)
    _set_raw(first["id"], "result", stolen)  # same job, another field
    with pytest.raises(DecryptionFailed, match="cannot decrypt result"):
        Job.objects.get(id=first["id"]).result  # noqa: B018


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag", "truncated"])
def test_an_altered_value_raises_naming_the_job_never_garbage(
    api: Api, full: str, where: str
) -> None:
    job = push(api, full, queue="jobs:enc", data={"secret": MARK})
    blob = bytearray(_as_bytes(_raw_row(job["id"])["data"]))
    header = 2 + blob[1]
    if where == "truncated":
        blob = blob[: header + 5]
    else:
        index = {"header": 2, "nonce": header, "ciphertext": header + 14, "tag": -1}[where]
        blob[index] ^= 0x01
    _set_raw(job["id"], "data", bytes(blob))
    with pytest.raises(DecryptionFailed) as caught:
        Job.objects.get(id=job["id"]).data  # noqa: B018
    assert job["id"] in str(caught.value) and MARK not in str(caught.value)


def test_the_api_answers_a_clear_500_for_an_unreadable_job(
    api: Api, full: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = push(api, full, queue="jobs:enc", data={"secret": MARK})
    other = push(api, full, queue="jobs:enc", data={"n": 1})
    _set_raw(other["id"], "data", _as_bytes(_raw_row(job["id"])["data"]))
    with caplog.at_level(logging.INFO):
        call = api.get(f"/jobs/{other['id']}", as_=full)
    assert call.status == 500
    assert call.body["code"] == "payload_unreadable"
    assert other["id"] in call.body["detail"]
    event = AuditEvent.objects.filter(action="getJob").latest("id")
    assert event.status == 500 and event.job_ids == [other["id"]]
    assert f"job {other['id']}: cannot decrypt data" in caplog.text
    assert MARK not in caplog.text and MARK not in json.dumps(call.body)


def test_a_key_missing_from_the_ring_is_named(api: Api, full: str, settings: Any) -> None:
    settings.ENCRYPTION_KEYS = K1
    job = push(api, full, queue="jobs:enc", data={"secret": MARK})
    settings.ENCRYPTION_KEYS = K2
    with pytest.raises(DecryptionFailed, match="key id 'k1' is not in ENCRYPTION_KEYS"):
        Job.objects.get(id=job["id"]).data  # noqa: B018


# -- the keyring ---------------------------------------------------------------------------


def test_the_first_key_seals_and_every_key_opens(api: Api, full: str, settings: Any) -> None:
    settings.ENCRYPTION_KEYS = K1
    old = push(api, full, queue="jobs:enc", data={"n": "old"})
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    new = push(api, full, queue="jobs:enc", data={"n": "new"})
    assert key_id_of(_as_bytes(_raw_row(old["id"])["data"])) == "k1"
    assert key_id_of(_as_bytes(_raw_row(new["id"])["data"])) == "k2"
    assert Job.objects.get(id=old["id"]).data == {"n": "old"}
    assert Job.objects.get(id=new["id"]).data == {"n": "new"}


SECRET_KEY_B64 = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ENCRYPTION_KEYS is not set"),
        (" , ", "ENCRYPTION_KEYS is not set"),
        (SECRET_KEY_B64, "entry 1 must be keyid:base64key"),
        (f"bad id!:{SECRET_KEY_B64}", "entry 1 must be keyid:base64key"),
        (f"k1:{SECRET_KEY_B64},k1:{SECRET_KEY_B64}", "entry 2: key id 'k1' appears twice"),
        (f"k1:{SECRET_KEY_B64[:-4]}!!!!", "entry 1 ('k1'): the key is not base64"),
        (
            f"k1:{base64.b64encode(os.urandom(16)).decode()}",
            "the key is 16 bytes; AES-256 needs 32",
        ),
        (f"k1:{base64.b64encode(bytes(32)).decode()}", "entry 1 ('k1'): the key is not random"),
    ],
)
def test_a_bad_keyring_is_refused_without_showing_a_key(text: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_keyring(text)
    assert message in str(caught.value)
    assert SECRET_KEY_B64 not in str(caught.value) and SECRET_KEY_B64[:12] not in str(caught.value)


def test_url_safe_base64_keys_are_accepted() -> None:
    key = base64.urlsafe_b64encode(bytes(range(200, 232))).decode()
    assert "-" in key or "_" in key
    assert parse_keyring(f"a:{key}, b:{generate_key()}").key_ids == ["a", "b"]


def test_check_reports_a_bad_keyring(settings: Any) -> None:
    from django.core.checks import run_checks

    settings.ENCRYPTION_KEYS = f"k1:{SECRET_KEY_B64[:20]}"
    [message] = [m for m in run_checks() if m.id == "flashq.E003"]
    assert "ENCRYPTION_KEYS entry 1" in message.msg and SECRET_KEY_B64[:20] not in message.msg


# -- rotation -----------------------------------------------------------------------------


def _store_under_k1(api: Api, full: str, settings: Any, count: int) -> list[str]:
    settings.ENCRYPTION_KEYS = K1
    jobs = [
        push(api, full, queue="jobs:rot", data={"n": i, "note": MARK})["id"] for i in range(count)
    ]
    [leased] = pull(api, full, queue="jobs:rot", count=1)
    api.post(
        f"/jobs/{leased['id']}/fail", {"lease_id": leased["lease_id"], "error": "e1"}, as_=full
    )
    Job.objects.filter(id=leased["id"]).update(run_at=Job.objects.get(id=leased["id"]).created_at)
    [leased] = pull(api, full, queue="jobs:rot", count=1)
    ack = {"lease_id": leased["lease_id"], "result": {"ok": True}}
    assert api.post(f"/jobs/{leased['id']}/ack", ack, as_=full).status == 200
    return jobs


def _values() -> dict[str, tuple[Any, ...]]:
    return {
        str(job.id): (job.data, job.result, job.error, job.errors)
        for job in Job.objects.order_by("id")
    }


def _key_ids() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT data, result, error, errors FROM queues_job")
        return {key_id_of(_as_bytes(v)) for row in cursor.fetchall() for v in row if v is not None}


def test_rotation_reseals_everything_in_resumable_batches(
    api: Api, full: str, settings: Any
) -> None:
    _store_under_k1(api, full, settings, 7)
    before = _values()
    assert _key_ids() == {"k1"}
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    # Interrupted after one batch of 3 jobs: those are under k2, the rest still k1.
    first = services.jobs_reseal(after=None, limit=3, actor=SETUP)
    assert (first.jobs_scanned, first.jobs_changed) == (3, 3)
    assert _key_ids() == {"k1", "k2"}
    out = StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)
    report = out.getvalue()
    # The job failed once and then acked carries data, result, error and errors: 4 values.
    assert (
        "Scanned 7 job(s), 0 schedule(s) and 0 webhook(s); values by key before: k1: 4, k2: 6."
        in report
    )
    assert (
        "Re-encrypted 4 value(s) in 4 job(s), 0 schedule(s) and 0 webhook secret(s) under key 'k2'"
        in report
    )
    assert _key_ids() == {"k2"}
    settings.ENCRYPTION_KEYS = K2  # the old key is gone: everything still opens
    assert _values() == before
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)  # a rerun has nothing to do
    assert (
        "Re-encrypted 0 value(s) in 0 job(s), 0 schedule(s) and 0 webhook secret(s)"
        in out.getvalue()
    )
    events = AuditEvent.objects.filter(action="keys.rotate").order_by("id")
    assert events[0].actor == "command:test-setup"
    assert {e.actor for e in events[1:]} == {"command:rotate_encryption_keys"}
    assert sum(e.details["jobs"] for e in events) == 7
    assert all(e.details["to_key"] == "k2" and e.details["from_keys"] == ["k1"] for e in events)
    assert MARK not in json.dumps([e.details for e in events])


def test_rotation_without_the_old_key_stops_and_changes_nothing(
    api: Api, full: str, settings: Any
) -> None:
    _store_under_k1(api, full, settings, 2)
    settings.ENCRYPTION_KEYS = K2
    with pytest.raises(CommandError, match="key id 'k1' is not in ENCRYPTION_KEYS") as caught:
        call_command("rotate_encryption_keys", stdout=StringIO())
    assert MARK not in str(caught.value)
    assert _key_ids() == {"k1"}
    assert not AuditEvent.objects.filter(action="keys.rotate").exists()


def test_rotation_keeps_a_write_made_between_batches(api: Api, full: str, settings: Any) -> None:
    """Rows are locked and re-read per batch: a result written after the scan started is
    re-sealed, not overwritten with an older value."""
    jobs = _store_under_k1(api, full, settings, 3)
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    services.jobs_reseal(after=None, limit=1, actor=SETUP)
    waiting = next(j for j in reversed(jobs) if Job.objects.get(id=j).state == "waiting")
    settings.ENCRYPTION_KEYS = K1  # another app server still sealing under k1
    services.job_update(job_id=uuid.UUID(waiting), data={"n": "changed"}, actor=SETUP)
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    call_command("rotate_encryption_keys", stdout=StringIO())
    settings.ENCRYPTION_KEYS = K2
    assert Job.objects.get(id=waiting).data == {"n": "changed"}


# -- nothing leaks sideways ---------------------------------------------------------------


def test_nothing_decrypted_reaches_logs_or_the_audit_trail(
    api: Api, full: str, caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    audit_log = logging.getLogger("flashq.audit")  # does not propagate to the root
    audit_log.addHandler(caplog.handler)
    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        job = _cycle(api, full)
        api.get(f"/jobs/{job['id']}", as_=full)
        api.get("/queues/jobs:enc/jobs", as_=full)
        services.job_cancel(job_id=uuid.UUID(push(api, full, queue="jobs:enc")["id"]), actor=SETUP)
    audit_log.removeHandler(caplog.handler)
    assert any(record.name == "flashq.audit" for record in caplog.records)
    assert MARK not in caplog.text
    assert MARK not in json.dumps(
        list(AuditEvent.objects.values("details", "job_ids")), default=str
    )


def test_sealed_values_never_show_their_bytes_or_plaintext(api: Api, full: str) -> None:
    job = push(api, full, queue="jobs:enc", data={"secret": MARK})
    stored = Job.objects.get(id=job["id"]).__dict__["data"]
    assert isinstance(stored, Sealed)
    assert repr(stored).startswith("<Sealed ") and MARK not in repr(stored)
    with pytest.raises(CommandError, match="data is encrypted and is not serialised in clear"):
        call_command("dumpdata", "queues.job", stdout=StringIO())


# -- the migration that sealed existing rows ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_existing_rows_and_its_reverse_opens_them() -> None:
    from django.db.migrations.executor import MigrationExecutor

    before, after = (
        ("queues", "0008_queue_sensitive_fields"),
        ("queues", "0009_job_payloads_sealed"),
    )
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old = executor.loader.project_state([before]).apps
    queue = old.get_model("queues", "Queue").objects.create(name="legacy")
    OldJob = old.get_model("queues", "Job")
    full = OldJob.objects.create(
        queue=queue, data={"note": MARK}, result={"r": 1}, error="e", errors=[{"error": "e"}]
    )
    bare = OldJob.objects.create(queue=queue, data={"n": 2})
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        assert MARK.encode() not in _every_stored_byte()
        assert _raw_row(str(bare.id))["result"] is None  # empty values stay NULL
        # The model as of that migration: later ones add columns.
        SealedJob = executor.loader.project_state([after]).apps.get_model("queues", "Job")
        sealed = {job.id: job for job in SealedJob.objects.all()}
        assert (sealed[full.id].data, sealed[full.id].result) == ({"note": MARK}, {"r": 1})
        assert (sealed[full.id].error, sealed[full.id].errors) == ("e", [{"error": "e"}])
        assert (sealed[bare.id].data, sealed[bare.id].result) == ({"n": 2}, None)
        assert (sealed[bare.id].error, sealed[bare.id].errors) == ("", [])
        executor = MigrationExecutor(connection)
        executor.migrate([before])
        reopened = executor.loader.project_state([before]).apps.get_model("queues", "Job")
        assert reopened.objects.get(id=full.id).data == {"note": MARK}
        assert reopened.objects.get(id=bare.id).errors == []
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_admin_shows_payloads_decrypted_with_sensitive_fields_masked(
    api: Api, full: str
) -> None:
    from django.contrib.auth.models import Permission

    from .personas import logged_in, make_staff

    data = {"userId": "u1", "ssn": "078-05-1120", "note": MARK}
    job = push(api, full, queue="jobs:adm", data=data)
    viewer = make_staff("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = logged_in(viewer)
    page = client.get(f"/admin/queues/job/{job['id']}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert MARK in text and "[MASKED]" in text
    assert "078-05-1120" not in text


@given(json_values(lone_surrogates=False))
def test_a_sealed_value_opens_to_itself_types_and_all(value: Any) -> None:
    """unseal reads with orjson where it agrees with the json module (security.jsonread):
    big integers stay exact, 1 stays an int and 1.0 a float."""
    job_id = uuid.uuid4()
    opened = unseal(seal(value, job_id=job_id, field="data"), job_id=job_id, field="data")
    assert typed(opened) == typed(value)

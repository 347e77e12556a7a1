"""End-to-end encrypted fields against the real server: pushed sealed (push, batch, flow,
under a JSON schema that asks for the sealed form), the server holds no plaintext (not
in any column of its database, not in the decrypted view a reveal token gets, not in its
log or audit lines), a worker with the key hands its handler the clear values, and a
worker with the wrong key or none fails the job with a code that says so."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import psycopg
import pytest
from conftest import Server, running, wait_for
from flashq_client import Client, FieldKeys, InvalidInput, Worker, WorkerJob
from flashq_client.worker.core import WITHHELD_TEXT

KEYS = FieldKeys({"k1": bytes(range(32))})
SEALED_FIELDS = ["ssn", "card.token"]
#: The sealed form: the queue's schema accepts nothing else at these fields.
SCHEMA = {
    "type": "object",
    "properties": {
        "ssn": {"type": "string", "pattern": "^fq1:"},
        "card": {"type": "object", "properties": {"token": {"type": "string", "pattern": "^fq1:"}}},
    },
    "required": ["ssn"],
}
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea")


def _columns_holding(server: Server, marker: str) -> tuple[list[str], int]:
    """Every text, JSON and bytea column of every table of the server's database that
    holds ``marker``, and how many columns were read."""
    found, scanned = [], 0
    with psycopg.connect(server.env["DATABASE_URL"]) as db:
        columns = db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = ANY(%s) ORDER BY 1, 2",
            [list(TEXT_TYPES)],
        ).fetchall()
        for table, column, kind in columns:
            if kind == "bytea":
                where = f'position(%s::bytea in "{column}") > 0'
                needle: Any = marker.encode()
            else:
                where = f'"{column}"::text LIKE %s'
                needle = f"%{marker}%"
            # Names from information_schema, quoted: no input of a user's reaches the SQL.
            query = f'SELECT count(*) FROM "{table}" WHERE {where}'  # noqa: S608
            row = db.execute(query, [needle]).fetchone()
            scanned += 1
            if row and row[0]:
                found.append(f"{table}.{column}")
    return found, scanned


def _sealing_client(server: Server, keys: FieldKeys | None = KEYS) -> Client:
    return server.client(field_keys=keys, encrypt_fields=SEALED_FIELDS if keys else ())


def test_the_server_never_holds_a_sealed_field_in_clear(server: Server, queue: str) -> None:
    marker = f"PLAIN{uuid.uuid4().hex}"
    data = {"ssn": f"{marker}-ssn", "card": {"token": f"{marker}-card", "brand": "visa"}, "n": 1}
    control = f"CONTROL{uuid.uuid4().hex}"  # in clear (a tag): the scan finds what is there
    child_queue = f"{queue}-child"
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def handler(job: WorkerJob) -> dict[str, Any]:
        with lock:
            seen.append(job["data"])
        return {"done": job["data"]["n"]}

    with _sealing_client(server) as flashq, server.client() as plain:
        plain.set_schema(queue, SCHEMA)
        with pytest.raises(InvalidInput) as refused:  # the schema wants the sealed form
            plain.push(queue, {"ssn": "078-05-1120"})
        assert refused.value.status == 422
        pushed = flashq.push(queue, data, tags=[control])
        flashq.push_batch(queue, [{"data": {**data, "n": 2}}])
        tree = flashq.push_flow(
            queue,
            {"data": {**data, "n": 3}},
            [{"queue": child_queue, "job": {"data": {**data, "n": 4}}}],
        )
        revealed = plain.get_job(pushed["id"])  # this token has reveal: the decrypted view
        assert revealed["data"]["ssn"].startswith("fq1:k1:")
        assert revealed["data"]["card"]["token"].startswith("fq1:k1:")
        assert revealed["data"]["card"]["brand"] == "visa"
        assert marker not in json.dumps(revealed)
        with (
            running(Worker(flashq, child_queue, handler, wait=1)),
            running(Worker(flashq, queue, handler, concurrency=2, wait=1)),
        ):
            wait_for(lambda: plain.get_job(tree["id"])["state"] == "completed", timeout=30)
        assert sorted(item["n"] for item in seen) == [1, 2, 3, 4]
        for item in seen:
            assert item == {**data, "n": item["n"]}, "the handler gets the clear values"
        assert plain.get_job(pushed["id"])["result"] == {"done": 1}

    found, scanned = _columns_holding(server, marker)
    assert scanned > 50 and found == [], f"plaintext in the database: {found}"
    assert _columns_holding(server, control)[0], "the scan finds a value stored in clear"
    log = server.log.read_text(errors="replace")
    assert pushed["id"] in log, "the server's log has this job's audit lines"
    assert marker not in log


@pytest.mark.parametrize(
    ("keys", "code"),
    [
        (FieldKeys({"k1": bytes(range(1, 33))}), "field_open_failed"),
        (FieldKeys({"k2": bytes(range(32))}), "field_key_missing"),
        (None, "field_key_missing"),
    ],
    ids=["wrong-key", "other-key-id", "no-keys"],
)
def test_a_worker_that_cannot_open_a_field_fails_the_job_saying_why(
    server: Server, queue: str, keys: FieldKeys | None, code: str
) -> None:
    marker = f"PLAIN{uuid.uuid4().hex}"
    called: list[Any] = []
    with _sealing_client(server) as producer, _sealing_client(server, keys) as consumer:
        job = producer.push(queue, {"ssn": marker}, max_attempts=1)
        with running(Worker(consumer, queue, called.append, wait=1)):
            wait_for(lambda: producer.get_job(job["id"])["state"] == "failed")
        failed = producer.get_job(job["id"])  # with reveal: the error text too
    assert called == [], "the handler never sees a job it cannot open"
    assert failed["error_code"] == code
    assert "field ssn cannot be opened" in failed["error"]
    assert marker not in json.dumps(failed)
    assert marker not in server.log.read_text(errors="replace")


def test_a_handler_failure_that_quotes_a_sealed_value_sends_no_text(
    server: Server, queue: str
) -> None:
    marker = f"PLAIN{uuid.uuid4().hex}"

    def handler(job: WorkerJob) -> None:
        int(job["data"]["ssn"])  # ValueError: invalid literal for int(): 'PLAIN...'

    with _sealing_client(server) as flashq, server.client() as plain:
        sealed = flashq.push(queue, {"ssn": marker}, max_attempts=1)
        clear = plain.push(queue, {"ssn": "not a number"}, max_attempts=1)
        with running(Worker(flashq, queue, handler, wait=1)):
            wait_for(
                lambda: {plain.get_job(job["id"])["state"] for job in (sealed, clear)} == {"failed"}
            )
        withheld, kept = plain.get_job(sealed["id"]), plain.get_job(clear["id"])
    assert (withheld["error_code"], withheld["error"]) == ("ValueError", WITHHELD_TEXT)
    assert "not a number" in kept["error"]  # a job with nothing sealed keeps its text
    assert _columns_holding(server, marker)[0] == []
    assert marker not in server.log.read_text(errors="replace")

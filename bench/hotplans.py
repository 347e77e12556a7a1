"""The plans of the hot statements on ``queues_job``, for bench/tenmillion.py: run inside
``manage.py shell`` (``ROWS_BENCH_TOKEN`` set), in-process through the Django test
client. It makes a single push, a batch push of 1,000, a pull of 100 and a pull that
acks them, and one retention batch (``jobs_clean``, rolled back), captures the SQL each
sends to the jobs table, and runs ``EXPLAIN (ANALYZE, BUFFERS)`` of each (rolled back;
an INSERT whose row now exists gets a plain ``EXPLAIN``). Prints the plans as JSON after
a ``@@plans@@`` line."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from compliance.audit import Actor
from queues.models import Queue
from queues.services import jobs_clean

SCAN_RE = re.compile(r"((?:Index Only |Index |Bitmap Index |Seq )Scan)(?: using (\w+))? on (\w+)")
VERBS = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")  # COPY (a batch push) has no plan
Captured = list[tuple[str, Any]]


@contextmanager
def capture() -> Iterator[Captured]:
    seen: Captured = []

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if "queues_job" in sql and sql.lstrip().upper().startswith(VERBS) and not many:
            seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield seen


def explain(label: str, sql: str, params: Any) -> dict[str, Any]:
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                lines = [row[0] for row in cursor.fetchall()]
                transaction.set_rollback(True)
        except DatabaseError:
            cursor.execute("EXPLAIN " + sql, params)
            lines = [row[0] for row in cursor.fetchall()]
    text = "\n".join(lines)
    timing = re.search(r"Execution Time: ([\d.]+) ms", text)
    scans = sorted(
        {
            f"{kind} {index} on {table}".replace("  ", " ")
            for kind, index, table in SCAN_RE.findall(text)
        }
    )
    return {
        "label": label,
        "sql": sql[:300],
        "ms": float(timing.group(1)) if timing else 0.0,
        "scans": scans,
        "plan": lines,
    }


def main() -> None:
    token = os.environ["ROWS_BENCH_TOKEN"]
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")

    def post(path: str, body: Any) -> Any:
        answer = client.post(f"/api/v1/{path}", body, content_type="application/json")
        assert answer.status_code in (200, 201), (path, answer.status_code, answer.content)
        return answer.json()

    stages: list[tuple[str, Captured]] = []
    with capture() as seen:
        post("queues/bench-single/jobs", {"data": {"userId": "u1", "n": 1}})
    stages.append(("push", seen))
    with capture() as seen:
        batch = [{"data": {"userId": "u1", "n": n}} for n in range(1000)]
        post("queues/bench-batch/jobs/batch", {"jobs": batch})
    stages.append(("batch push", seen))
    with capture() as seen:
        jobs = post("queues/bench-pull/pull", {"count": 100, "lease": 60})["jobs"]
    stages.append(("pull", seen))
    acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
    with capture() as seen:
        post("queues/bench-pull/pull", {"count": 100, "lease": 60, "ack": acks})
    stages.append(("pull + ack", seen))
    queue = Queue.objects.get(name="bench-archive")
    with capture() as seen, transaction.atomic():
        jobs_clean(
            queues=[queue],
            states=["completed"],
            finished_before_=timezone.now() - timedelta(days=6),
            limit=1000,
            actor=Actor.command("hotplans"),
            events=False,
        )
        transaction.set_rollback(True)
    stages.append(("retention batch", seen))
    plans = []
    for stage, statements in stages:
        for n, (sql, params) in enumerate(statements, 1):
            label = stage if len(statements) == 1 else f"{stage} #{n}"
            plans.append(explain(label, sql, params))
    print("\n@@plans@@\n" + json.dumps(plans))

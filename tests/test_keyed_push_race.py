"""A keyed push is one statement on PostgreSQL whose insert gives way to an unfinished
job holding its key (queues.bulkinsert): against a push of the same key that has not
committed yet, it waits for that transaction, then answers with its job if it committed
and makes its own if it rolled back. Either way the queue holds one job with the key."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from queues import services
from queues.jobspec import JobSpec
from queues.models import Job, Queue

from .support import SETUP, postgres_only

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]

OWNER = "token:racer"


class RolledBack(Exception):
    pass


def _push(n: int) -> services.Pushed:
    spec = JobSpec(data={"n": n}, key="k")
    return services.job_push(queue_name="race:k", spec=spec, owner=OWNER, actor=SETUP)


def _waiting_on_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.parametrize("commits", [True, False])
def test_a_keyed_push_waits_for_an_uncommitted_push_of_its_key(commits: bool) -> None:
    Queue.objects.create(name="race:k")
    held, release = threading.Event(), threading.Event()
    first: list[services.Pushed] = []
    second: list[Any] = []
    pids: list[int] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                first.append(_push(1))
                held.set()
                assert release.wait(30)
                if not commits:
                    raise RolledBack
        except RolledBack:
            pass
        finally:
            connection.close()

    def push_again() -> None:
        try:
            connection.ensure_connection()
            pids.append(connection.connection.info.backend_pid)
            second.append(_push(2))
        except Exception as error:  # reported to the test
            second.append(error)
        finally:
            connection.close()

    holding = threading.Thread(target=hold)
    holding.start()
    assert held.wait(30)
    pushing = threading.Thread(target=push_again)
    pushing.start()
    deadline = time.monotonic() + 30
    while not (pids and _waiting_on_a_lock(pids[0])):  # on the first push's key
        assert time.monotonic() < deadline, "the second push never waited for the first"
        time.sleep(0.01)
    release.set()
    holding.join(30)
    pushing.join(30)
    [pushed] = second
    assert isinstance(pushed, services.Pushed), pushed
    [stored] = Job.objects.filter(key="k")
    if commits:
        assert (pushed.created, pushed.job.id) == (False, first[0].job.id)
        assert stored.data == {"n": 1}
    else:
        assert pushed.created and stored.id == pushed.job.id and stored.data == {"n": 2}

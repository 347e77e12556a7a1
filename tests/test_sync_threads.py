"""Issue 21, the hot path under ASGI: a worker runs its requests' sync code in a bounded
pool of shared threads (kernel.blocking.shared_threads, SYNC_THREADS), each keeping its
database connection from call to call, instead of a new thread (and a connection from a
pool) per request; after each call a thread gives up a connection left unusable."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from kernel.blocking import SharedThreads

from .processes import GUNICORN, database_url, free_port, production_env, serve
from .support import ON_POSTGRES

ROOT = Path(settings.BASE_DIR)
SYNC_THREADS = 4


def _connection_id() -> object:
    """The thread's DB-API connection itself: held by the test, so that a new one cannot
    take its place in memory and look the same."""
    connection.ensure_connection()
    return connection.connection


def _leave_outside_autocommit() -> object:
    connection.set_autocommit(False)  # as a call that broke off mid-transaction would
    return connection.connection


@pytest.mark.django_db(transaction=True)
def test_a_pool_thread_keeps_its_connection_and_gives_up_a_spoilt_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on PostgreSQL in production (SQLite's settings leave it at 0: no reuse).
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)
    threads = SharedThreads(max_workers=1)
    try:
        first = threads.submit(_connection_id).result()
        assert threads.submit(_connection_id).result() is first  # kept, not reopened
        spoilt = threads.submit(_leave_outside_autocommit).result()
        assert spoilt is first
        assert threads.submit(_connection_id).result() is not spoilt  # closed after that call
    finally:
        threads.submit(connections.close_all).result()
        threads.shutdown()


def _worker_tasks(master_pid: int) -> set[str]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    [worker] = children.read_text().split()
    try:
        return {task.name for task in Path(f"/proc/{worker}/task").iterdir()}
    except FileNotFoundError:
        return set()


@pytest.mark.e2e
@pytest.mark.skipif(not ON_POSTGRES, reason="the production server runs on PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_requests_run_in_the_workers_shared_threads_not_one_each(tmp_path: Path) -> None:
    port = free_port()
    env = production_env(
        database_url=database_url(),
        static_root=tmp_path / "static",
        without=("GUNICORN_", "DB_POOL_", "SYNC_THREADS"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        SYNC_THREADS=str(SYNC_THREADS),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        TMPDIR=str(tmp_path),
    )
    made = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "create_token", "t", "--allow=q=push"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    token = made.stdout.strip().splitlines()[-1]

    def pushes(count: int) -> Iterator[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        try:
            for n in range(count):
                body = json.dumps({"data": {"n": n}})
                conn.request("POST", "/api/v1/queues/q/jobs", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                yield response.status
        finally:
            conn.close()

    with serve(GUNICORN, env=env, port=port, log=tmp_path / "gunicorn.log") as served:
        master = served.process.pid
        assert list(pushes(1)) == [201]
        before = _worker_tasks(master)
        seen = set(before)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.update(_worker_tasks(master))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=8) as clients:
                batches = list(clients.map(lambda _: list(pushes(40)), range(8)))
        finally:
            done.set()
            watcher.join()

    assert [status for batch in batches for status in batch] == [201] * 320
    # The worker's threads after one push and at most the rest of its SYNC_THREADS; a
    # thread per request would have shown hundreds.
    assert len(seen) <= len(before) + SYNC_THREADS, (sorted(before), sorted(seen))

"""A lost answer to an ack, end to end: a TCP proxy in front of the real gunicorn
forwards the first ack and hangs up before its answer comes back. The client sends the
ack again (acks are safe to repeat), the server answers the repeat as the first, and
the job is completed once."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Server
from flashq_client import Client


class AnswerDropper:
    """A TCP proxy to ``target``: every connection is relayed both ways, except that
    the first request whose line names ``marker`` is forwarded and then both sockets
    are closed as soon as its answer starts (the request was acted on, its answer lost).
    HTTP/1.1 without pipelining: a client sends its next request only once it has the
    answer to the last, so the bytes after the marked request are that request's answer."""

    def __init__(self, target: tuple[str, int], marker: bytes) -> None:
        self.target, self.marker = target, marker
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen = 0  # requests carrying the marker
        self.dropped = 0  # answers dropped
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            drop = threading.Event()
            threading.Thread(
                target=self._requests, args=(downstream, upstream, drop), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, downstream, drop), daemon=True
            ).start()

    def _requests(
        self, downstream: socket.socket, upstream: socket.socket, drop: threading.Event
    ) -> None:
        while chunk := _recv(downstream):
            if self.marker in chunk:
                with self.lock:
                    self.seen += 1
                    if self.seen == 1:
                        drop.set()  # before the request goes: its answer comes after
            try:
                upstream.sendall(chunk)
            except OSError:
                break
        _close(downstream, upstream)

    def _answers(
        self, upstream: socket.socket, downstream: socket.socket, drop: threading.Event
    ) -> None:
        while chunk := _recv(upstream):
            if drop.is_set():
                with self.lock:
                    self.dropped += 1
                break
            try:
                downstream.sendall(chunk)
            except OSError:
                break
        _close(downstream, upstream)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture
def dropper(server: Server, request: pytest.FixtureRequest) -> Iterator[AnswerDropper]:
    host, port = server.url.removeprefix("http://").split(":")
    proxy = AnswerDropper((host, int(port)), request.param)
    yield proxy
    proxy.close()


def _completions(server: Server, job_id: str) -> tuple[int, int]:
    """(``completed`` events of the job, completions in the queue's rollup), read from
    the server's database: what streams, webhooks and the charts were told."""
    with psycopg.connect(server.env["DATABASE_URL"]) as db:
        events = db.execute(
            "SELECT count(*) FROM queues_jobevent WHERE job_id = %s AND kind = 'completed'",
            [job_id],
        ).fetchone()
        rollup = db.execute(
            "SELECT coalesce(sum(m.completed), 0) FROM queues_jobminute m "
            "JOIN queues_job j ON j.queue_id = m.queue_id WHERE j.id = %s",
            [job_id],
        ).fetchone()
    assert events is not None and rollup is not None
    return int(events[0]), int(rollup[0])


@pytest.mark.parametrize("dropper", [b"/ack HTTP/1.1"], indirect=True)
def test_an_ack_whose_answer_was_lost_is_sent_again_and_completes_once(
    server: Server, dropper: AnswerDropper, queue: str
) -> None:
    with server.client() as flashq:
        flashq.push(queue, {"n": 1})
        [job] = flashq.pull(queue, lease=30)
    with Client(dropper.url, server.token) as flashq:
        acked = flashq.ack(job["id"], job["lease_id"], {"sent": True})
    assert (dropper.seen, dropper.dropped) == (2, 1)
    assert acked["state"] == "completed" and acked["result"] == {"sent": True}
    assert _completions(server, job["id"]) == (1, 1)


@pytest.mark.parametrize("dropper", [b"POST /api/v1/jobs/ack HTTP/1.1"], indirect=True)
def test_a_batch_ack_whose_answer_was_lost_is_sent_again_and_completes_once(
    server: Server, dropper: AnswerDropper, queue: str
) -> None:
    with server.client() as flashq:
        flashq.push_batch(queue, [{"data": {"n": n}} for n in range(3)])
        jobs = flashq.pull(queue, count=3, lease=30)
    acks: list[dict[str, Any]] = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
    with Client(dropper.url, server.token) as flashq:
        assert flashq.ack_batch(acks) == 3
    assert (dropper.seen, dropper.dropped) == (2, 1)
    assert [_completions(server, job["id"])[0] for job in jobs] == [1, 1, 1]

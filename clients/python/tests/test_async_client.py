"""AsyncClient against the real server, beside Client: the same calls, answers, errors
and retries (the shared cases run on both), the two expose the same methods, and a
pause before a retry can be cut short on either."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import threading
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import Server, _run
from flashq_client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Interrupted,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from flashq_client.shapes import PushedJob, WaitedJob

TOKEN = "fq_secret_" + "x" * 30
#: Methods whose text differs between the two (how each closes and is interrupted), and
#: flush, which makes no request of its own (test_producer checks it on both).
LIFECYCLE = {"close", "aclose", "interrupt", "flush"}
#: Client only: submit (producer mode's push that returns a concurrent.futures.Future at
#: once, for threads). On AsyncClient a task is that future: asyncio.create_task(
#: client.push(...)) returns at once, and producer mode gathers the tasks' pushes.
SYNC_ONLY = {"submit"}

Connect = Callable[..., Any]


class Blocking:
    """An AsyncClient called from a test as a Client is: each coroutine is run to its
    end on one event loop (the client's connections belong to it)."""

    def __init__(self, client: AsyncClient, runner: asyncio.Runner) -> None:
        self.client = client
        self.runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isasyncgen(result):
                return self.runner.run(_collect(result))
            return self.runner.run(result)

        return call


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest, server: Server) -> Iterator[Connect]:
    """Makes a client of the kind the test is run for, closed at its end."""
    with contextlib.ExitStack() as stack:
        if request.param == "sync":

            def make(**kwargs: Any) -> Any:
                return stack.enter_context(server.client(**kwargs))

        else:
            runner = stack.enter_context(asyncio.Runner())

            def make(**kwargs: Any) -> Any:
                client = AsyncClient(server.url, kwargs.pop("token", server.token), **kwargs)
                stack.callback(lambda: runner.run(client.aclose()))
                return Blocking(client, runner)

        yield make


Interfere = Callable[[int], httpx.Response | Exception | None]


class Interfering(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Forwards to gunicorn (sync or async); ``interfere(n)`` may answer the n-th POST
    to a path ending in ``suffix`` itself, or raise (None: forward it). With ``after``
    the request reaches gunicorn first and only its answer is replaced (lost)."""

    def __init__(self, suffix: str, interfere: Interfere, *, after: bool = False) -> None:
        self.sync = httpx.HTTPTransport()
        self.aio = httpx.AsyncHTTPTransport()
        self.suffix = suffix
        self.interfere = interfere
        self.after = after
        self.seen: list[httpx.Request] = []

    def _matches(self, request: httpx.Request) -> bool:
        return request.method == "POST" and request.url.path.endswith(self.suffix)

    def _instead(self) -> httpx.Response | None:
        answer = self.interfere(len(self.seen))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._matches(request):
            return self.sync.handle_request(request)
        self.seen.append(request)
        if self.after:
            response = self.sync.handle_request(request)
            response.read()
            response.close()
            return self._instead() or response
        return self._instead() or self.sync.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._matches(request):
            return await self.aio.handle_async_request(request)
        self.seen.append(request)
        if self.after:
            response = await self.aio.handle_async_request(request)
            await response.aread()
            await response.aclose()
            return self._instead() or response
        return self._instead() or await self.aio.handle_async_request(request)

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.aio.aclose()


def _unavailable(**headers: str) -> httpx.Response:
    body = {"type": "x", "title": "t", "status": 503, "detail": "d", "code": "unavailable"}
    return httpx.Response(503, json=body, headers=headers)


# -- the same calls, answers and errors -------------------------------------------------


def test_push_pull_ack_fail_and_wait(connect: Connect, queue: str) -> None:
    flashq = connect()
    pushed = flashq.push(queue, {"n": 1}, max_attempts=2, backoff={"type": "fixed", "delay": 0})
    again = flashq.push(queue, {"n": 1}, key=pushed["key"])
    assert (pushed["created"], again["created"], again["id"]) == (True, False, pushed["id"])
    [job] = flashq.pull(queue, lease=30)
    assert job["data"] == {"n": 1}
    failed = flashq.fail(job["id"], job["lease_id"], "boom", code="Boom")
    assert failed["state"] in ("waiting", "delayed")
    [job] = flashq.pull(queue, lease=30, wait=5)
    flashq.progress(job["id"], job["lease_id"], 50, "half")
    done = flashq.ack(job["id"], job["lease_id"], {"ok": True})
    assert done["state"] == "completed"
    waited = flashq.wait(job["id"], timeout_ms=0)
    assert (waited["finished"], waited["result"], waited["attempts"]) == (True, {"ok": True}, 2)
    assert [each["id"] for each in flashq.get_jobs(queue)] == [pushed["id"]]
    batch = flashq.push_batch(queue, [{"data": {"n": n}} for n in range(3)])
    leased = flashq.pull(queue, count=3)
    assert flashq.ack_batch([{"id": j["id"], "lease_id": j["lease_id"]} for j in leased]) == 3
    assert {j["id"] for j in leased} == {j["id"] for j in batch}


def test_each_refusal_raises_its_error(connect: Connect, server: Server, queue: str) -> None:
    flashq = connect()
    with pytest.raises(Unauthorized) as unauthorized:
        connect(token="fq_not_a_real_token_" + uuid.uuid4().hex, max_retries=0).me()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthenticated")

    name = f"push-only-{uuid.uuid4().hex[:8]}"
    out = _run(["create_token", name, "--allow", f"{queue}=push"], server.env)
    with pytest.raises(Forbidden) as forbidden:
        connect(token=out.strip().splitlines()[-1]).pull(queue)
    assert forbidden.value.status == 403

    with pytest.raises(NotFound) as missing:
        flashq.get_job(uuid.uuid4())
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")

    flashq.push(queue, {"n": 1})
    [job] = flashq.pull(queue)
    with pytest.raises(Conflict) as conflict:
        flashq.ack(job["id"], str(uuid.uuid4()))
    assert (conflict.value.status, conflict.value.code) == (409, "lease_conflict")

    with pytest.raises(InvalidInput) as refused:
        flashq.push(queue, {"card": "4111 1111 1111 1111"})
    error = refused.value
    assert (error.status, error.code, error.errors[0]["path"]) == (
        422,
        "card-number-detected",
        "/data/card",
    )
    assert error.request_id
    assert "4111" not in str(error)


# -- the same retries -------------------------------------------------------------------


def test_a_503_with_retry_after_is_waited_out_then_retried(connect: Connect, queue: str) -> None:
    # A pull is not safe to repeat, but flashQ sends Retry-After only after rolling the
    # request back: the retry is the one that leases.
    flashq = connect()
    flashq.push(queue, {"n": 1})
    rolled_back = _unavailable(**{"Retry-After": "1"})
    transport = Interfering("/pull", lambda n: rolled_back if n == 1 else None)
    [job] = connect(transport=transport).pull(queue)
    assert len(transport.seen) == 2
    assert flashq.get_job(job["id"])["state"] == "active"


def test_a_push_whose_connection_dropped_is_retried_into_one_job(
    connect: Connect, queue: str
) -> None:
    # The first attempt reaches gunicorn and makes the job; its answer never comes back.
    dropped = Interfering(
        "/jobs", lambda n: httpx.RemoteProtocolError("dropped") if n == 1 else None, after=True
    )
    pushed = connect(transport=dropped).push(queue, {"n": 1})
    keys = [json.loads(request.content)["key"] for request in dropped.seen]
    assert len(keys) == 2 and keys[0] == keys[1] == pushed["key"]
    assert pushed["created"] is False  # the retry found the first attempt's job
    assert [job["id"] for job in connect().get_jobs(queue)] == [pushed["id"]]


def test_a_fail_whose_connection_dropped_is_not_repeated(connect: Connect, queue: str) -> None:
    flashq = connect()
    flashq.push(queue, {"n": 1}, max_attempts=3)
    [job] = flashq.pull(queue)
    dropped = Interfering("/fail", lambda n: httpx.RemoteProtocolError("dropped"), after=True)
    with pytest.raises(ConnectionFailed) as caught:
        connect(transport=dropped).fail(job["id"], job["lease_id"], "boom")
    assert "after 1 attempt(s)" in str(caught.value)
    assert len(dropped.seen) == 1
    assert flashq.get_job(job["id"])["attempts"] == 1


# -- cutting a retry's pause short ------------------------------------------------------


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port on this machine that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_the_stop_event_ends_a_retry_pause_at_once() -> None:
    # Ten retries against a refusing port would pause about 30 s in all.
    stop = threading.Event()
    with _refusing_port() as port:
        client = Client(f"http://127.0.0.1:{port}", TOKEN, max_retries=10, stop=stop)
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with client, pytest.raises(Interrupted) as caught:
            client.me()
    assert time.monotonic() - started < 5
    assert caught.value.code == "interrupted"
    assert "retry GET me" in str(caught.value) and TOKEN not in str(caught.value)


def test_an_interrupted_client_makes_one_attempt_and_raises() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _unavailable()

    client = Client("https://q.io", TOKEN, transport=httpx.MockTransport(handle), max_retries=1)
    client.interrupt()
    with client:
        with pytest.raises(Interrupted):
            client.get_job("j")
        assert len(seen) == 1
        client.stop.clear()  # cleared, it retries again, and gives up as usual
        with pytest.raises(Unavailable):
            client.get_job("j")
        assert len(seen) == 3


def test_cancelling_an_async_call_ends_its_retry_pause() -> None:
    async def call(port: int) -> None:
        async with AsyncClient(f"http://127.0.0.1:{port}", TOKEN, max_retries=10) as client:
            await asyncio.wait_for(client.me(), timeout=0.5)

    with _refusing_port() as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            asyncio.run(call(port))
    assert time.monotonic() - started < 5


# -- the same methods -------------------------------------------------------------------


def _public(cls: type) -> dict[str, Any]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_")
        and callable(getattr(cls, name))
        and name not in LIFECYCLE | SYNC_ONLY
    }


def test_both_clients_have_the_same_methods_with_the_same_signatures() -> None:
    sync, aio = _public(Client), _public(AsyncClient)
    assert set(sync) == set(aio)
    assert len(sync) >= 40
    for name, method in sync.items():
        mine, theirs = inspect.signature(method), inspect.signature(aio[name])
        assert mine.parameters == theirs.parameters, name
        # The same answer; get_jobs iterates it with ``async for``.
        assert theirs.return_annotation in (
            mine.return_annotation,
            f"Async{mine.return_annotation}",
        ), name
        assert not inspect.iscoroutinefunction(method), name
        assert inspect.iscoroutinefunction(aio[name]) or inspect.isasyncgenfunction(aio[name])
        assert method.__doc__ == aio[name].__doc__, name


def test_signatures_and_hints_show_the_method_as_called() -> None:
    signature = inspect.signature(Client.push)
    assert list(signature.parameters)[:3] == ["self", "queue", "data"]
    assert signature.return_annotation == "PushedJob | WaitedJob"
    hints = typing.get_type_hints(AsyncClient.push)
    assert hints["return"] == PushedJob | WaitedJob
    assert Client.push.__qualname__ == "Client.push"
    assert AsyncClient.push.__qualname__ == "AsyncClient.push"


SECTIONS = ("Args:", "Returns:", "Raises:", "Retried:")


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_public_method_documents_args_returns_raises_and_retried(cls: type) -> None:
    for name, method in _public(cls).items():
        doc = inspect.getdoc(method) or ""
        signature = inspect.signature(method)
        wanted = ["Raises:", "Retried:"]
        if len(signature.parameters) > 1:
            wanted.insert(0, "Args:")
        if signature.return_annotation not in ("None", None):
            wanted.insert(-2, "Returns:")
        found = [section for section in SECTIONS if f"\n{section}\n" in doc]
        assert found == wanted, f"{cls.__name__}.{name}: sections {found}, wanted {wanted}"
        args = doc.split("\nArgs:\n", 1)[-1].split("\n\n", 1)[0] if "Args:" in wanted else ""
        for parameter in list(signature.parameters)[1:]:
            assert f"    {parameter}: " in args, f"{cls.__name__}.{name}: {parameter} undocumented"


def test_the_async_stop_event_ends_a_retry_pause_at_once() -> None:
    async def call(port: int) -> None:
        async with AsyncClient(f"http://127.0.0.1:{port}", TOKEN, max_retries=10) as client:
            asyncio.get_running_loop().call_later(0.5, client.interrupt)
            await client.me()

    with _refusing_port() as port:
        started = time.monotonic()
        with pytest.raises(Interrupted) as caught:
            asyncio.run(call(port))
    assert time.monotonic() - started < 5
    assert caught.value.code == "interrupted" and TOKEN not in str(caught.value)

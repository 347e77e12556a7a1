"""The client's own rules, without a server: where the token comes from and where it
never goes, plain http refused, base URLs, and which answer raises which error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from flashq_client import (
    Client,
    Conflict,
    ConnectionFailed,
    FlashqError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Worker,
)
from flashq_client._policy import Pause

TOKEN = "fq_secret_" + "x" * 30


def _problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": f"urn:flashq:problem:{code}", "title": code, "status": status}
    body.update({"detail": f"detail of {code}", "code": code})
    return httpx.Response(
        status,
        json=body,
        headers={"X-Request-ID": "req-1", "Content-Type": "application/problem+json", **headers},
    )


def _mock(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASHQ_TOKEN", raising=False)
    monkeypatch.delenv("FLASHQ_TOKEN_FILE", raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry delays, recorded instead of slept."""
    slept: list[float] = []

    def pause(self: Client, pause: Pause) -> None:
        slept.append(pause.seconds)

    monkeypatch.setattr(Client, "_pause", pause)
    return slept


def test_token_from_argument_env_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    transport, seen = _mock(httpx.Response(200, json={"name": "t"}))
    with pytest.raises(ValueError, match="no API token"):
        Client("https://flashq.example.com")

    monkeypatch.setenv("FLASHQ_TOKEN", "from-env")
    Client("https://flashq.example.com", transport=transport).me()
    assert seen[-1].headers["Authorization"] == "Bearer from-env"

    monkeypatch.delenv("FLASHQ_TOKEN")
    (tmp_path / "token").write_text("from-file\n")
    monkeypatch.setenv("FLASHQ_TOKEN_FILE", str(tmp_path / "token"))
    Client("https://flashq.example.com", transport=transport).me()
    assert seen[-1].headers["Authorization"] == "Bearer from-file"

    Client("https://flashq.example.com", "from-arg", transport=transport).me()
    assert seen[-1].headers["Authorization"] == "Bearer from-arg"
    assert seen[-1].url == "https://flashq.example.com/api/v1/me"

    with pytest.raises(ValueError, match="header") as caught:
        Client("https://flashq.example.com", "two words")
    assert "two words" not in str(caught.value)


def test_plain_http_only_to_localhost() -> None:
    for url in ("http://flashq.example.com", "http://10.0.0.5:8000/api/v1"):
        with pytest.raises(ValueError, match="plain http"):
            Client(url, TOKEN)
        Client(url, TOKEN, allow_insecure_http=True).close()
    for url in ("http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000", "https://q.io"):
        Client(url, TOKEN).close()
    for url in ("ftp://flashq.example.com", "flashq.example.com", "https://u:p@q.io"):
        with pytest.raises(ValueError):
            Client(url, TOKEN)


def test_base_url_may_name_the_server_or_its_api() -> None:
    for url in ("https://q.io", "https://q.io/", "https://q.io/api/v1", "https://q.io/api/v1/"):
        assert Client(url, TOKEN).base_url == "https://q.io/api/v1/"
    assert Client("https://q.io/flashq", TOKEN).base_url == "https://q.io/flashq/api/v1/"


def test_token_is_in_no_repr_and_no_error(sleeps: list[float]) -> None:
    transport, _ = _mock(_problem(401, "unauthenticated"))
    client = Client("https://flashq.example.com", TOKEN, transport=transport)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(vars(client))
    with pytest.raises(Unauthorized) as caught:
        client.me()
    assert TOKEN not in str(caught.value) + repr(caught.value)

    failing, _ = _mock(httpx.ReadError("connection reset"))
    with pytest.raises(ConnectionFailed) as lost:
        Client("https://flashq.example.com", TOKEN, transport=failing).ack("j", "l")
    error = lost.value
    assert error.__cause__ is None
    assert error.__context__ is None
    assert TOKEN not in str(error) + repr(error)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidInput),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, InvalidInput),
        (415, InvalidInput),
        (422, InvalidInput),
        (429, RateLimited),
        (500, FlashqError),
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
    ],
)
def test_each_status_raises_its_error(
    status: int, kind: type[FlashqError], sleeps: list[float]
) -> None:
    transport, seen = _mock(_problem(status, f"code_{status}", **{"Retry-After": "7"}))
    client = Client("https://q.io", TOKEN, transport=transport, max_retries=0)
    with client, pytest.raises(kind) as caught:
        client.get_job("a")
    error = caught.value
    assert type(error) is kind
    assert (error.status, error.code, error.detail) == (
        status,
        f"code_{status}",
        f"detail of code_{status}",
    )
    assert error.request_id == "req-1"
    if isinstance(error, RateLimited | Unavailable):
        assert error.retry_after == 7
    assert len(seen) == 1


def test_an_error_that_is_not_problem_json() -> None:
    transport, _ = _mock(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(Unavailable) as caught:
        Client("https://q.io", TOKEN, transport=transport, max_retries=0).me()
    assert (caught.value.code, caught.value.detail) == ("http_502", "Bad Gateway")


def test_safe_requests_retry_with_backoff_then_give_up(sleeps: list[float]) -> None:
    transport, seen = _mock(_problem(503, "service_unavailable"))
    with pytest.raises(Unavailable):
        Client("https://q.io", TOKEN, transport=transport, max_retries=3).me()
    assert len(seen) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        ceiling = min(10.0, 0.2 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_is_honoured(sleeps: list[float]) -> None:
    transport, seen = _mock(
        _problem(429, "rate_limited", **{"Retry-After": "3"}),
        httpx.Response(200, json={"name": "t"}),
    )
    assert Client("https://q.io", TOKEN, transport=transport).me()["name"] == "t"
    assert sleeps == [3.0]
    # Longer than MAX_RETRY_AFTER_SECONDS: raised at once rather than waited for.
    transport, seen = _mock(_problem(429, "rate_limited", **{"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as caught:
        Client("https://q.io", TOKEN, transport=transport).me()
    assert caught.value.retry_after == 3600
    assert len(seen) == 1


def test_unsafe_requests_retry_only_when_nothing_was_done(sleeps: list[float]) -> None:
    # 502, or a broken connection: the failure may have been recorded; not repeated.
    unsafe: list[httpx.Response | Exception] = [_problem(502, "bad_gateway"), httpx.ReadError("x")]
    for answer in unsafe:
        transport, seen = _mock(answer, httpx.Response(200, json={"state": "completed"}))
        with pytest.raises((Unavailable, ConnectionFailed)):
            Client("https://q.io", TOKEN, transport=transport).fail("j", "l", "e")
        assert len(seen) == 1
    # 503 with Retry-After (rolled back), 429, or a connection never made: repeated.
    safe: list[httpx.Response | Exception] = [
        _problem(503, "service_unavailable", **{"Retry-After": "0"}),
        _problem(429, "rate_limited", **{"Retry-After": "1"}),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("timed out"),
    ]
    for answer in safe:
        transport, seen = _mock(answer, httpx.Response(200, json={"state": "waiting"}))
        failed = Client("https://q.io", TOKEN, transport=transport).fail("j", "l", "e")
        assert failed["state"] == "waiting"
        assert len(seen) == 2
    # 503 without Retry-After is not flashQ's rollback promise: not repeated.
    transport, seen = _mock(httpx.Response(503), httpx.Response(200, json={}))
    with pytest.raises(Unavailable):
        Client("https://q.io", TOKEN, transport=transport).fail("j", "l", "e")
    assert len(seen) == 1


def test_acks_are_retried_after_a_lost_answer(sleeps: list[float]) -> None:
    """The server answers a repeated ack of the same lease with the same outcome, so an
    ack (one or a batch) is sent again after a 502 or a broken connection."""
    for answer in (_problem(502, "bad_gateway"), httpx.ReadError("x")):
        transport, seen = _mock(answer, httpx.Response(200, json={"state": "completed"}))
        client = Client("https://q.io", TOKEN, transport=transport)
        assert client.ack("j", "l")["state"] == "completed"
        assert len(seen) == 2
        transport, seen = _mock(answer, httpx.Response(200, json={"acked": 1}))
        client = Client("https://q.io", TOKEN, transport=transport)
        assert client.ack_batch([{"id": "j", "lease_id": "l"}]) == 1
        assert len(seen) == 2


def test_request_bodies_use_the_api_names() -> None:
    transport, seen = _mock(httpx.Response(201, json={"id": "j", "key": "k"}))
    client = Client("https://q.io", TOKEN, transport=transport)
    client.push("mail:out", {"a": 1}, delay_ms=5, ttl_ms=9, priority=0, tags=("t",))
    request = seen[-1]
    assert request.url.path == "/api/v1/queues/mail:out/jobs"
    body: dict[str, Any] = json.loads(request.content)
    assert body["data"] == {"a": 1}
    assert (body["delay"], body["ttl"], body["priority"], body["tags"]) == (5, 9, 0, ["t"])
    assert "delay_ms" not in body
    assert "subject" not in body


def test_a_pull_the_server_would_not_hold_says_when_to_pull_again() -> None:
    over_cap = httpx.Response(200, json={"jobs": []}, headers={"Retry-After": "2"})
    transport, _ = _mock(over_cap, httpx.Response(200, json={"jobs": []}))
    client = Client("https://flashq.example.com", TOKEN, transport=transport)
    first = client.pull("q", wait=5)
    assert first == [] and first.retry_after == 2.0
    assert client.pull("q", wait=5).retry_after is None


def test_the_worker_pauses_as_told_instead_of_pulling_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the server's cap on waiting pulls an empty batch comes back at once with
    Retry-After: the worker sleeps that long rather than busy-looping on pulls."""
    worker: Worker | None = None
    pulls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        pulls.append(request)
        if len(pulls) >= 3 and worker is not None:
            worker.stop()  # without the pause it would pull forever
        return httpx.Response(200, json={"jobs": []}, headers={"Retry-After": "2"})

    client = Client("https://flashq.example.com", TOKEN, transport=httpx.MockTransport(handle))
    worker = Worker(client, "q", lambda job: None, wait=5)
    paused: list[float] = []

    def pause(seconds: float) -> None:
        paused.append(seconds)
        worker.stop()

    monkeypatch.setattr(worker, "_pause", pause)
    assert worker._loop() is None
    assert paused == [2.0]
    assert len(pulls) == 1

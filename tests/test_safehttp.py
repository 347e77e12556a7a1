"""The SSRF guard (kernel.safehttp). Internal addresses are refused before any connection
is attempted: as IP literals, and as what a host name resolves to (the resolver is
patched, so no test sends a packet anywhere but loopback). Loopback is reached only
through the allow-list, over TLS checked against the host name, with no redirects
followed, a deadline and a capped answer."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel import safehttp
from kernel.safehttp import Allowed, Refused, Unreachable

from .certificates import make_certificates
from .webhookreceiver import Receiver, serve

BODY = b'{"kind":"pushed"}'


LOOPBACK = Allowed.parse(["127.0.0.1/32"])


def _post(receiver: Receiver, **overrides: Any) -> safehttp.Answer:
    """POST to the receiver through the loopback allow-list, trusting its CA."""
    url = overrides.pop("url", receiver.url())
    options: dict[str, Any] = {
        "body": BODY,
        "headers": {},
        "allowed": LOOPBACK,
        "ca_bundle": str(receiver.ca_file),
    }
    return safehttp.post(url, **{**options, **overrides})


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    yield from serve(tmp_path)


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection attempted (and refused here): there must be none."""
    attempts: list[Any] = []

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"a connection was attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return attempts


def _resolving(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    """Make every host name resolve to ``addresses``; the names looked up."""
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port) if ":" not in a else (a, port, 0, 0),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.1.2.3:8443/",
        "https://[::1]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://10.0.0.1/",
        "https://172.16.5.4/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://[fe80::1]/",
        "https://[fc00::1]/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
        "https://[2002:7f00:1::]/",  # 6to4 of loopback
        "http://example.com/",
        "https://user:pw@example.com/",
        "https://example.com:25/",
        "https://localhost/",
        # Ports wrap modulo 65536 below the URL parser: 70536 would be 5000, 65558 is 22.
        "https://example.com:70536/",
        "https://example.com:65558/",
        "https://example.com:0/",
        # Python 3.11 calls these global; they are not.
        "https://[fec0::1]/",
        "https://192.0.0.8/",
        "https://[3fff::1]/",
    ],
)
def test_internal_or_unsafe_urls_are_refused_before_any_connection(
    url: str, no_connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = _resolving(monkeypatch, "93.184.215.14")
    with pytest.raises(Refused):
        safehttp.post(url, body=BODY, headers={})
    assert no_connections == []
    assert looked_up == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.0.0.1"],
        ["169.254.169.254"],
        ["fd00:ec2::254"],
        ["100.100.100.200"],
        # One good record does not launder a bad one: every A/AAAA record is checked.
        ["93.184.215.14", "10.1.2.3"],
        ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:10.0.0.1"],
        ["fec0::1"],
        ["192.0.0.8"],
        ["3fff::1"],
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
    addresses: list[str], no_connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = _resolving(monkeypatch, *addresses)
    with pytest.raises(Refused, match="resolves to") as refused:
        safehttp.post("https://hooks.example.com/x", body=BODY, headers={})
    # The message (stored as the webhook's last_error, shown by GET) names no address.
    assert not any(a in str(refused.value) for a in addresses)
    assert refused.value.address in [ipaddress.ip_address(a) for a in addresses]
    assert looked_up == ["hooks.example.com"]
    assert no_connections == []


def test_a_name_in_etc_hosts_for_loopback_is_refused(no_connections: list[Any]) -> None:
    # The real resolver: "localhost" resolves to loopback without any packet sent.
    with pytest.raises(Refused, match="resolves to a loopback address"):
        safehttp.vetted_addresses("localhost", 443, Allowed())
    assert no_connections == []


def test_the_allow_list_reaches_loopback_with_a_verified_certificate(
    receiver: Receiver,
) -> None:
    answer = _post(receiver, headers={"X-Test": "1"}, allowed=Allowed.parse(["127.0.0.0/8"]))
    assert answer == safehttp.Answer(200)
    [request] = receiver.requests
    assert (request.path, request.body, request.headers["X-Test"]) == ("/hook", BODY, "1")
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"


def test_without_the_allow_list_loopback_is_refused(
    receiver: Receiver, no_connections: list[Any]
) -> None:
    with pytest.raises(Refused):
        safehttp.post(receiver.url(), body=BODY, headers={}, ca_bundle=str(receiver.ca_file))
    assert receiver.requests == [] and no_connections == []


def test_the_name_is_resolved_once_and_the_vetted_address_is_connected(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is looked up once; the connection goes to that answer,
    and TLS checks the certificate against the name (SNI), with Host naming it."""
    looked_up = _resolving(monkeypatch, "127.0.0.1")
    answer = _post(receiver, url=receiver.url(host="hooks.test"))
    assert answer.status == 200
    # The socket is opened on the address itself (a literal getaddrinfo answers locally).
    assert looked_up == ["hooks.test", "127.0.0.1"]
    assert receiver.requests[0].headers["Host"] == f"hooks.test:{receiver.port}"


def test_a_certificate_for_another_name_or_an_untrusted_one_fails(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolving(monkeypatch, "127.0.0.1")
    with pytest.raises(Unreachable):
        _post(receiver, url=receiver.url(host="other.test"))
    with pytest.raises(Unreachable):
        _post(receiver, ca_bundle="")
    assert receiver.requests == []


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status, receiver.location = 307, "https://169.254.169.254/latest/meta-data/"
    answer = _post(receiver)
    assert answer.status == 307
    assert len(receiver.requests) == 1


def test_an_oversized_answer_is_cut_at_the_cap(receiver: Receiver) -> None:
    receiver.answer_bytes = 1024 * 1024
    started = time.monotonic()
    assert _post(receiver) == safehttp.Answer(200)
    assert time.monotonic() - started < 2


def _trickling(tmp_path: Path, sleep: float) -> Iterator[tuple[int, Path, list[float]]]:
    """A loopback TLS receiver that reads the request, then sends its answer's headers
    one byte every ``sleep`` seconds: each read is quick, the whole is endless. Yields
    its port, CA file and the times its connections ended."""
    ca_file, cert_file, key_file = make_certificates(
        tmp_path, names=("localhost",), addresses=("127.0.0.1",)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    ended: list[float] = []
    done = threading.Event()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100:
                    if done.wait(sleep):
                        break
                    tls.sendall(bytes([byte]))
            except OSError:
                pass
        ended.append(time.monotonic())

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca_file, ended
    finally:
        done.set()
        listener.close()
        thread.join(timeout=5)


def _post_to(port: int, ca_file: Path, **options: Any) -> safehttp.Answer:
    url = f"https://127.0.0.1:{port}/hook"
    return safehttp.post(
        url, body=BODY, headers={}, allowed=LOOPBACK, ca_bundle=str(ca_file), **options
    )


def test_a_receiver_trickling_its_headers_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """httpx's timeouts are per read: one byte a second would trip none of them. The
    deadline is over the whole exchange."""
    for port, ca_file, ended in _trickling(tmp_path, sleep=0.5):
        started = time.monotonic()
        with pytest.raises(Unreachable, match="took longer than 2 s"):
            _post_to(port, ca_file, timeout=2)
        assert time.monotonic() - started < 3.5
        # The socket was shut down at the deadline: the receiver saw its end then too.
        deadline = time.monotonic() + 2
        while not ended and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended and ended[0] - started < 3.5


def test_the_default_deadline_is_five_seconds_however_slow_the_trickle(
    tmp_path: Path,
) -> None:
    for port, ca_file, _ in _trickling(tmp_path, sleep=1.0):
        started = time.monotonic()
        with pytest.raises(Unreachable, match="took longer than 5 s"):
            _post_to(port, ca_file)
        assert 4.5 < time.monotonic() - started < 6.5


def test_a_slow_name_lookup_counts_against_the_deadline(
    monkeypatch: pytest.MonkeyPatch, no_connections: list[Any]
) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        time.sleep(3)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    started = time.monotonic()
    with pytest.raises(Unreachable, match=r"resolving hooks\.example\.com took longer"):
        safehttp.post("https://hooks.example.com/x", body=BODY, headers={}, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert no_connections == []


def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.delay = 1.5
    with pytest.raises(Unreachable):
        _post(receiver, timeout=0.5)


def test_url_problems_are_named() -> None:
    assert safehttp.url_problem("https://hooks.example.com/x") is None
    assert safehttp.url_problem("https://hooks.example.com:8443/x") is None
    assert safehttp.url_problem("https://hooks.example.com:65535/x") is None
    for port in (0, 65536, 70536, 65558):
        url = f"https://hooks.example.com:{port}/x"
        assert safehttp.url_problem(url) == "has a port out of range"
    assert safehttp.url_problem("http://hooks.example.com/") == "must be an https:// URL"
    assert safehttp.url_problem("https://10.0.0.1/") == "may not name a private address"
    assert safehttp.url_problem("https://10.0.0.1/", Allowed.parse(["10.0.0.0/8"])) is None
    assert safehttp.url_problem("https://localhost/", Allowed.parse(["localhost"])) is None


def test_a_receiver_trickling_its_tls_handshake_is_cut_off_at_the_deadline() -> None:
    """A handshake that never ends (a TLS record header, then a byte every 0.3 s) is
    cut off at the deadline too (a regression guard: the ssl module's own handshake
    deadline and the watchdog, which knows the socket from its connect, both see it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the ClientHello
            try:
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record...
                while not done.wait(0.3):
                    conn.sendall(b"\x02")  # ...that never completes
            except OSError:
                pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/hook"
        with pytest.raises(Unreachable):
            safehttp.post(url, body=BODY, headers={}, allowed=LOOPBACK, timeout=1.5)
        assert time.monotonic() - started < 3
    finally:
        done.set()
        listener.close()
        thread.join(timeout=5)

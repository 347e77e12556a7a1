"""TLS in front, end to end: the shipped deploy/nginx/flashq.conf, rendered with this
module's ports and paths by plain string replacement (so what runs here IS the shipped
file), in front of gunicorn (deploy/gunicorn.conf.py, production settings, a scratch
SQLite database), spoken to over https with a throwaway CA.

The client connects from 127.0.0.2 while nginx reaches gunicorn from 127.0.0.1 (the only
TRUSTED_PROXIES entry), so "the audit trail records the client, not the proxy" is a
real check. Skipped, with the reason, where nginx is not installed; the checks that the
file agrees with the app's limits run everywhere."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel import limits

from .certificates import make_certificates
from .processes import GUNICORN, free_port, manage, production_env, serve, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "deploy" / "nginx" / "flashq.conf"

#: The proxy (nginx -> gunicorn) connects from here; the app trusts only this address.
PROXY_IP = "127.0.0.1"
#: The client connects to nginx from here (any 127/8 address is local on Linux).
CLIENT_IP = "127.0.0.2"
#: A content-hashed static file only nginx has (the app's STATIC_ROOT is empty).
STATIC_FILE = "admin/css/probe.0123456789ab.css"


# -- the shipped file agrees with the app (no nginx needed) -------------------------------


def _directive(conf: str, name: str) -> str:
    found = re.findall(rf"^\s*{name}\s+([^;]+);", conf, flags=re.MULTILINE)
    assert len(found) == 1, f"{name} should be set once in {SHIPPED_CONF.name}: {found}"
    return str(found[0]).strip()


def _nginx_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert match is not None, f"not an nginx size: {text!r}"
    return (
        int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    )


def test_the_body_cap_is_the_apps_default_request_limit() -> None:
    conf = SHIPPED_CONF.read_text()
    assert _nginx_size(_directive(conf, "client_max_body_size")) == limits.DEFAULT_MAX_REQUEST_BYTES


def test_the_upstream_read_timeout_outlasts_the_longest_long_poll() -> None:
    conf = SHIPPED_CONF.read_text()
    [app, events] = re.findall(r"^\s*proxy_read_timeout\s+([^;]+);", conf, flags=re.MULTILINE)
    timeout = re.fullmatch(r"(\d+)s?", app)
    assert timeout is not None
    assert int(timeout.group(1)) >= limits.MAX_WAIT_SECONDS + 10
    assert events == "1h"


def test_event_streams_pass_the_proxy_unbuffered() -> None:
    conf = SHIPPED_CONF.read_text()
    [block] = re.findall(r"location ~ (\S+) \{([^}]*)\}", conf)
    pattern, body = block
    for path in ("/api/v1/queues/jobs:*/events", "/admin/events/stream"):
        assert re.search(pattern, path), path
    assert not re.search(pattern, "/api/v1/queues/jobs:a/jobs")
    assert re.search(r"^\s*proxy_buffering off;", body, flags=re.MULTILINE)
    assert re.search(r"^\s*proxy_pass http://flashq_app;", body, flags=re.MULTILINE)


def test_x_forwarded_for_is_overwritten_not_appended() -> None:
    conf = SHIPPED_CONF.read_text()
    assert "$proxy_add_x_forwarded_for" not in conf
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", conf)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;", conf)


def _requests_per_client(conf: str) -> int:
    """The shipped limit_conn: requests in progress per client address."""
    match = re.fullmatch(r"flashq_per_client\s+(\d+)", _directive(conf, "limit_conn"))
    assert match is not None, "limit_conn should use the flashq_per_client zone"
    return int(match.group(1))


def test_each_client_address_has_a_bounded_number_of_requests_in_progress() -> None:
    conf = SHIPPED_CONF.read_text()
    zone = _directive(conf, "limit_conn_zone")
    assert re.fullmatch(r"\$binary_remote_addr\s+zone=flashq_per_client:\d+[km]", zone), zone
    # Bounded, well below what one ASGI worker serves at once.
    assert 1 <= _requests_per_client(conf) <= 64
    assert _directive(conf, "limit_conn_status") == "429"
    assert re.search(r"^\s*error_page\s+429\s+@flashq_too_many;", conf, flags=re.MULTILINE)
    named = re.search(r"location @flashq_too_many \{(.*?)\n    \}", conf, flags=re.DOTALL)
    assert named is not None
    assert re.search(r"add_header\s+Retry-After\s+\d+\s+always;", named.group(1))


# -- the stack: throwaway CA, gunicorn, nginx ----------------------------------------------


@dataclass(frozen=True)
class Stack:
    root: Path
    http_port: int
    https_port: int
    ca_file: Path
    token: str
    database: Path


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


#: Placeholders the shipped file uses more than once (once per server block).
REPEATED_PLACEHOLDERS = {"/var/log/nginx/access.log": 2}


def render_conf(replacements: Mapping[str, str]) -> str:
    """The shipped file with each placeholder replaced; each must be in its directives
    exactly once (or as often as REPEATED_PLACEHOLDERS says), so an edit that renames
    one fails here instead of silently testing the placeholder."""
    text = SHIPPED_CONF.read_text()
    directives = re.sub(r"(^|\s)#.*$", "", text, flags=re.MULTILINE)
    for placeholder, value in replacements.items():
        count, expected = directives.count(placeholder), REPEATED_PLACEHOLDERS.get(placeholder, 1)
        assert count == expected, (
            f"{SHIPPED_CONF} should use {placeholder!r} {expected} times, not {count}"
        )
        text = text.replace(placeholder, value)
    return text


def _wrapper_conf(root: Path, site: Path) -> str:
    """The top-level nginx.conf a distribution would provide, with every path in ``root``
    so nginx runs without root (under root, workers stay root to read the tmp dir)."""
    temp = {name: root / "nginx-temp" / name for name in ("body", "proxy", "fcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "nginx-error.log"} notice;
events {{ worker_connections 64; }}
http {{
    types {{
        text/html html;
        text/css css;
        application/javascript js;
        application/json json;
        image/svg+xml svg;
        image/png png;
        font/woff2 woff2;
    }}
    default_type application/octet-stream;
    access_log {root / "nginx-access.log"};
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not on PATH (apt-get install nginx): the TLS proxy is not tested")
    root = tmp_path_factory.mktemp("tls-proxy")
    ca_file, chain_file, key_file = make_certificates(root)
    nginx_static = root / "nginx-static"
    (nginx_static / STATIC_FILE).parent.mkdir(parents=True)
    (nginx_static / STATIC_FILE).write_text("body { color: #123456; }\n")
    (root / "metrics").mkdir()

    database = root / "db.sqlite3"
    env = production_env(
        database_url=f"sqlite:///{database}",
        # The app's static root is empty: /static/ answered with a file means nginx.
        static_root=root / "app-static",
        without=(
            "GUNICORN_",
            "SECURE_",
            "MAX_",
            "ALLOWED_",
            "TRUSTED_PROXIES",
            "AUTH_FAILURE_RATE",
        ),
        ALLOWED_HOSTS="localhost,127.0.0.1",
        # The app believes X-Forwarded-* only from the proxy's address. The client's
        # 127.0.0.2 must not be in here, or the check below proves nothing.
        TRUSTED_PROXIES=f"{PROXY_IP}/32",
        # Left on (the production default): were X-Forwarded-Proto not believed, every
        # API call would be redirected instead of answered.
        SECURE_SSL_REDIRECT="true",
        GUNICORN_WORKERS="1",
        # deploy/gunicorn.conf.py would otherwise make one in /tmp and leave it there
        # (it calls mkdtemp even when this is set: TMPDIR keeps that one here too).
        PROMETHEUS_MULTIPROC_DIR=str(root / "metrics"),
        TMPDIR=str(root),
        # A heartbeat every 3 s (it ends the answer under gunicorn's sync workers).
        EVENT_STREAM_HEARTBEAT_SECONDS="3",
    )
    manage(env, "migrate", "-v", "0")
    token = manage(env, "create_token", "tls-proxy", "--allow", "*=*").strip().splitlines()[-1]

    app_port, http_port, https_port = free_port(PROXY_IP), free_port(PROXY_IP), free_port(PROXY_IP)
    env["GUNICORN_BIND"] = f"{PROXY_IP}:{app_port}"
    site = root / "flashq.conf"
    site.write_text(
        render_conf(
            {
                "listen 80;": f"listen {PROXY_IP}:{http_port};",
                "listen 443 ssl http2;": f"listen {PROXY_IP}:{https_port} ssl http2;",
                "/etc/flashq/tls/fullchain.pem": str(chain_file),
                "/etc/flashq/tls/privkey.pem": str(key_file),
                "server 127.0.0.1:8000;": f"server {PROXY_IP}:{app_port};",
                "/srv/flashq/staticfiles/": f"{nginx_static}/",
                "/var/log/nginx/access.log": str(root / "nginx-access.log"),
            }
        )
    )
    wrapper = root / "nginx.conf"
    wrapper.write_text(_wrapper_conf(root, site))
    nginx_args = [nginx, "-p", f"{root}/", "-c", str(wrapper), "-e", str(root / "nginx-error.log")]
    checked = subprocess.run([*nginx_args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the rendered config: {checked.stderr}"

    app = serve(GUNICORN, env=env, port=app_port, host=PROXY_IP, log=root / "gunicorn.log")
    # nginx is ready when it listens (its /healthz would be the app's); it writes its
    # errors to its own log, shown if it does not start.
    errors = root / "nginx-error.log"
    proxy = serve(
        nginx_args,
        env=os.environ,
        port=https_port,
        host=PROXY_IP,
        log=root / "nginx.out",
        health=None,
        shown_log=errors,
    )
    with app, proxy as served:
        wait_until_ready(served.process, http_port, errors, host=PROXY_IP, health=None)
        yield Stack(root, http_port, https_port, ca_file, token, database)


# -- the client -------------------------------------------------------------------------


def _context(stack: Stack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.ca_file))


def _call(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str],
) -> Reply:
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def https(
    stack: Stack,
    method: str,
    path: str,
    payload: object = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One call to nginx over https from CLIENT_IP, with the token."""
    body = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    connection = http.client.HTTPSConnection(
        "127.0.0.1",  # verified against the certificate's IP address entry
        stack.https_port,
        context=_context(stack),
        timeout=30,
        source_address=(CLIENT_IP, 0),
    )
    sent = {"Authorization": f"Bearer {stack.token}", **(headers or {})}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    return _call(connection, method, path, body, sent)


def audited_ips(stack: Stack, reply: Reply) -> list[str | None]:
    """client_ip of the audit event(s) the app wrote for this reply (by X-Request-ID)."""
    request_id = reply.header("X-Request-ID")
    assert request_id, f"the app should answer with X-Request-ID: {reply.headers}"
    with sqlite3.connect(stack.database, timeout=10) as db:
        rows = db.execute(
            "SELECT client_ip FROM compliance_auditevent WHERE request_id = ?", (request_id,)
        ).fetchall()
    return [row[0] for row in rows]


def _assert_hsts(reply: Reply) -> None:
    values = reply.headers_named("Strict-Transport-Security")
    assert len(values) == 1, f"exactly one HSTS header, not {values}"
    max_age = re.search(r"max-age=(\d+)", values[0])
    assert max_age and int(max_age.group(1)) >= 365 * 24 * 3600, values[0]


# -- over https -------------------------------------------------------------------------


@pytest.mark.e2e
def test_push_pull_ack_through_the_proxy_are_recorded_with_the_clients_address(
    stack: Stack,
) -> None:
    pushed = https(stack, "POST", "/api/v1/queues/q/jobs", {"data": {"n": 1}})
    assert pushed.status == 201, (pushed.status, pushed.body)
    job_id = pushed.json()["id"]

    pulled = https(stack, "POST", "/api/v1/queues/q/pull", {"count": 1})
    assert pulled.status == 200, (pulled.status, pulled.body)
    jobs = pulled.json()["jobs"]
    assert isinstance(jobs, list) and len(jobs) == 1
    job = jobs[0]
    assert job["id"] == job_id and job["lease_id"]

    acked = https(stack, "POST", f"/api/v1/jobs/{job_id}/ack", {"lease_id": job["lease_id"]})
    assert acked.status == 200, (acked.status, acked.body)
    assert acked.json()["state"] == "completed"

    for reply in (pushed, pulled, acked):
        # The client's address (127.0.0.2), not the proxy's (127.0.0.1).
        assert audited_ips(stack, reply) == [CLIENT_IP]
        _assert_hsts(reply)


@pytest.mark.e2e
def test_a_client_cannot_choose_its_recorded_address(stack: Stack) -> None:
    forged = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6;proto=https",
        "X-Forwarded-Proto": "http",
    }
    reply = https(stack, "POST", "/api/v1/queues/q/jobs", {"data": {"n": 2}}, headers=forged)
    assert reply.status == 201, (reply.status, reply.body)
    assert audited_ips(stack, reply) == [CLIENT_IP]


@pytest.mark.e2e
def test_plain_http_is_redirected_to_https(stack: Stack) -> None:
    connection = http.client.HTTPConnection(
        "127.0.0.1", stack.http_port, timeout=30, source_address=(CLIENT_IP, 0)
    )
    reply = _call(connection, "GET", "/api/v1/queues?page=2", None, {})
    assert reply.status in (301, 308)
    # To the configured name, not to whatever Host the client sent.
    assert reply.header("Location") == "https://flashq.example.com/api/v1/queues?page=2"
    assert reply.header("X-Request-ID") is None  # answered by nginx: the app never saw it


@pytest.mark.e2e
def test_the_public_proxy_does_not_pass_metrics_on(stack: Stack) -> None:
    reply = https(stack, "GET", "/metrics", None)
    assert reply.status == 404
    assert reply.header("X-Request-ID") is None  # answered by nginx: the app never saw it


@pytest.mark.e2e
def test_only_tls_1_2_and_1_3_are_spoken(stack: Stack) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = _context(stack)
        context.minimum_version = context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == version.name.replace("_", ".")

    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: the point
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS 1.1 only at level 0
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"the local OpenSSL cannot offer TLS 1.1, so its refusal is untestable: {exc}")
    with (
        socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        old.wrap_socket(raw, server_hostname="localhost").close()
    if refused.value.reason in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL"):
        pytest.skip(f"the local OpenSSL would not send a TLS 1.1 hello: {refused.value}")
    # The server's answer: a protocol_version alert.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


@pytest.mark.e2e
def test_a_body_over_the_cap_is_refused_by_the_proxy(stack: Stack) -> None:
    too_big = b" " * (limits.DEFAULT_MAX_REQUEST_BYTES + 1)
    reply = https(stack, "POST", "/api/v1/queues/q/jobs", raw=too_big)
    assert reply.status == 413
    assert reply.header("X-Request-ID") is None  # nginx's answer, not the app's
    assert reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["code"] == "payload_too_large"
    _assert_hsts(reply)


@pytest.mark.e2e
def test_a_body_over_nginxs_default_cap_but_within_the_apps_reaches_the_app(
    stack: Stack,
) -> None:
    # nginx's own default client_max_body_size is 1 MiB; the app accepts 10 MiB.
    jobs = [{"data": {"blob": "x" * 700_000}} for _ in range(3)]
    reply = https(stack, "POST", "/api/v1/queues/big/jobs/batch", {"jobs": jobs})
    assert reply.status == 201, (reply.status, reply.body[:500])
    assert audited_ips(stack, reply) == [CLIENT_IP]


@pytest.mark.e2e
def test_static_files_are_served_by_nginx_with_long_cache_headers(stack: Stack) -> None:
    reply = https(stack, "GET", f"/static/{STATIC_FILE}")
    assert reply.status == 200, reply.status
    assert b"#123456" in reply.body
    assert reply.header("Content-Type") == "text/css"
    cache = reply.header("Cache-Control") or ""
    assert "max-age=315360000" in cache and "immutable" in cache
    _assert_hsts(reply)


def _held_request(stack: Stack) -> ssl.SSLSocket:
    """A request from CLIENT_IP whose headers are in and whose body never comes: nginx
    counts it as in progress until the socket closes."""
    raw = socket.create_connection(
        ("127.0.0.1", stack.https_port), timeout=10, source_address=(CLIENT_IP, 0)
    )
    held = _context(stack).wrap_socket(raw, server_hostname="127.0.0.1")
    held.sendall(
        b"POST /api/v1/queues/q/jobs HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return held


@pytest.mark.e2e
def test_one_address_past_its_requests_in_progress_gets_429_from_the_proxy(
    stack: Stack,
) -> None:
    limit = _requests_per_client(SHIPPED_CONF.read_text())
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(limit):
            held.append(_held_request(stack))
        time.sleep(0.3)  # nginx has read every one's headers
        refused = https(stack, "GET", "/api/v1/me")
        assert refused.status == 429, (refused.status, refused.body[:300])
        assert refused.header("Retry-After") == "1"
        assert refused.header("X-Request-ID") is None  # nginx's answer, not the app's
        assert refused.header("Content-Type") == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        _assert_hsts(refused)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)  # nginx has seen them go
    assert https(stack, "GET", "/api/v1/me").status == 200


# -- the access logs ----------------------------------------------------------------------

#: A test Visa number as a careless client might put it in a path.
CARDS = ("4111111111111111", "4111-1111-1111-1111")


def _logs_once_written(stack: Stack, replies: list[Reply]) -> tuple[str, str]:
    """nginx's access log and gunicorn's output, once both hold the access line of each
    reply (a line that ends with its request id; the audit trail's JSON lines on
    gunicorn's output do not)."""
    logs = stack.root / "nginx-access.log", stack.root / "gunicorn.log"
    marks = [f'"{reply.header("X-Request-ID")}"' for reply in replies]
    deadline = time.monotonic() + 10
    while True:
        texts = [log.read_text() for log in logs]
        if all(re.search(rf"{mark}$", text, re.M) for mark in marks for text in texts):
            return texts[0], texts[1]
        assert time.monotonic() < deadline, f"no access line with each of {marks}: {texts}"
        time.sleep(0.1)


@pytest.mark.e2e
def test_a_card_number_in_the_path_reaches_neither_access_log(stack: Stack) -> None:
    """Refused by the app (422, nothing stored), and written by neither nginx (every long
    digit run in the path is [redacted]) nor gunicorn (first 6 and last 4 digits)."""
    refused = [
        https(stack, "POST", f"/api/v1/queues/{card}/jobs", {"data": {"n": 1}}) for card in CARDS
    ]
    assert [reply.status for reply in refused] == [422, 422], [r.body for r in refused]
    # Percent-encoded, two and three numbers in one path, and over plain http (the
    # redirecting server logs too): none reaches the app as a queue it could create.
    others = [
        https(stack, "GET", "/api/v1/queues/%34111%201111%201111%201111/jobs"),
        https(stack, "GET", "/api/v1/queues/4111111111111111/jobs/5500-0000-0000-0004"),
        https(stack, "GET", "/api/v1/x/4111111111111111/y/5500000000000004/z/378282246310005"),
    ]
    connection = http.client.HTTPConnection(
        "127.0.0.1", stack.http_port, timeout=30, source_address=(CLIENT_IP, 0)
    )
    assert _call(connection, "GET", "/api/v1/queues/4111111111111111/jobs", None, {}).status == 301
    # A job id whose last group is all digits is a UUID, not a number to redact.
    job_path = "/api/v1/jobs/0190a3c4-5e6f-7abc-8def-012345678901"
    job = https(stack, "GET", job_path)
    nginx_log, gunicorn_log = _logs_once_written(stack, [*refused, *others, job])

    lines = nginx_log.splitlines()  # one per request, in the order they were answered
    for line, reply in zip(lines[-7:-5], refused, strict=True):
        assert '"POST /api/v1/queues/[redacted]/jobs HTTP/1.1" 422' in line
        assert str(reply.header("X-Request-ID")) in line
    assert '"GET /api/v1/queues/[redacted]/jobs HTTP/1.1"' in lines[-5]
    assert '"GET /api/v1/queues/[redacted]/jobs/[redacted] HTTP/1.1"' in lines[-4]
    assert '"GET [redacted] HTTP/1.1"' in lines[-3]
    assert '"GET /api/v1/queues/[redacted]/jobs HTTP/1.1" 301' in lines[-2]
    assert f'"GET {job_path} HTTP/1.1" 404' in lines[-1]
    assert f'"GET {job_path}" 404' in gunicorn_log
    assert '"POST /api/v1/queues/411111******1111/jobs" 422' in gunicorn_log
    for log in (nginx_log, gunicorn_log):
        for number in (*CARDS, "5500000000000004", "5500-0000-0000-0004", "378282246310005"):
            assert number not in log
        assert "4111 1111" not in log and "%34111" not in log


def test_an_event_stream_passes_the_proxy_as_it_is_written(stack: Stack) -> None:
    """Each frame reaches the client when the app writes it, not when a buffer fills or
    the answer ends (proxy_buffering off): the first line at once, the heartbeat 3 s on."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1",
        stack.https_port,
        context=_context(stack),
        timeout=10,
        source_address=(CLIENT_IP, 0),
    )
    started = time.monotonic()
    try:
        connection.request(
            "GET",
            "/api/v1/queues/*/events",
            headers={"Authorization": f"Bearer {stack.token}", "Accept": "text/event-stream"},
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        first = response.readline()
        first_at = time.monotonic() - started
        while (line := response.readline()) and not line.startswith(b": heartbeat"):
            pass
        heartbeat_at = time.monotonic() - started
    finally:
        connection.close()
    assert first.startswith(b"retry: ")
    assert first_at < 1.5, first_at
    assert line.startswith(b": heartbeat") and heartbeat_at >= 2.5, (line, heartbeat_at)

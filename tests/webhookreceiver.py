"""A real HTTPS receiver on loopback, in a thread of the test process, for webhook tests:
its certificate, made at test time (tests.certificates), names ``localhost`` and
``hooks.test``, 127.0.0.1 and ::1, signed by a throwaway CA (trust it through
``WEBHOOK_CA_BUNDLE``). It records each request and answers as told (status, body
size, delay, Location)."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .certificates import make_certificates


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    ca_file: Path
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    answer_bytes: int = 2
    delay: float = 0.0
    location: str = ""

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(receiver.status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(receiver.answer_bytes))
            self.end_headers()
            # The client may stop reading at its cap.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.wfile.write(b"x" * receiver.answer_bytes)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serve(directory: Path) -> Iterator[Receiver]:
    """Start the receiver on 127.0.0.1 (a free port); stop it when the caller is done."""
    ca_file, cert_file, key_file = make_certificates(
        directory, names=("localhost", "hooks.test"), addresses=("127.0.0.1", "::1")
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(port=server.server_address[1], ca_file=ca_file)
    server.RequestHandlerClass = _handler(receiver)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

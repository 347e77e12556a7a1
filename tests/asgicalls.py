"""One request through Django's ASGI handler in this process, whose client may hang up
at a moment the test chooses (an ``http.disconnect``, as an ASGI server sends when the
connection drops). For what a real server cannot time exactly: a hang-up while the
view's first thread is still running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.handlers.asgi import ASGIHandler


@dataclass
class AsgiCall:
    """The messages the handler sent, and ``hang_up`` to make the client go."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def ended(self) -> bool:
        """Whether the handler sent the last piece of the answer."""
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.sent)


async def asgi_call(
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes = b"",
    meanwhile: Callable[[AsgiCall], Awaitable[None]],
) -> AsgiCall:
    """Run the request; ``meanwhile(call)`` runs alongside it (and may ``hang_up``).
    Returns once both are over."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    call = AsgiCall()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await call.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        call.sent.append(dict(message))

    handling = asyncio.create_task(ASGIHandler()(scope, receive, send))
    await meanwhile(call)
    call.hang_up.set()
    await asyncio.wait_for(handling, 30)
    return call

"""The ASGI server's pieces: the worker gunicorn runs (``worker_class`` in
deploy/gunicorn.conf.py) and the access log it writes.

The worker is uvicorn's, minus what the app decides itself: it believes no forwarded
headers (flashq_project.proxyheaders trusts only TRUSTED_PROXIES), writes no access
line of its own (uvicorn's would carry the query string and any card number in the
path), sends no ``Server`` header and skips the lifespan protocol (Django has none). Its
error log masks card numbers as gunicorn's does (flashq_project.gunicornlog).

``AccessLog`` wraps the app (flashq_project/asgi.py) and writes one line per request,
in the format gunicorn's threaded workers wrote (``%(h)s "%(m)s %(U)s" %(s)s %(b)s
%(M)sms "%({x-request-id}o)s"``): the path without its query string, card numbers
masked, to gunicorn's access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from .gunicornlog import ERROR_LOG_FILTER, redact

ACCESS_LOGGER = logging.getLogger("flashq.access")

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Worker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type hints
    CONFIG_KWARGS = {
        "loop": "auto",
        "http": "auto",
        "proxy_headers": False,
        "access_log": False,
        "server_header": False,
        "lifespan": "off",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logging.getLogger("uvicorn.error").addFilter(ERROR_LOG_FILTER)
        ACCESS_LOGGER.handlers = self.log.access_log.handlers
        ACCESS_LOGGER.setLevel(self.log.access_log.level)
        ACCESS_LOGGER.propagate = False


class AccessLog:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ACCESS_LOGGER.handlers:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": "-", "bytes": 0, "request_id": "-"}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        seen["request_id"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            raw_path = scope.get("raw_path") or scope["path"].encode()
            ACCESS_LOGGER.info(
                '%s "%s %s" %s %s %dms "%s"',
                client[0],
                scope["method"],
                redact(raw_path.decode("latin-1").split("?", 1)[0]),
                seen["status"],
                seen["bytes"] or "-",
                (time.perf_counter() - started) * 1000,
                seen["request_id"],
            )

"""ASGI entry point (gunicorn with flashq_project.asgiserver.Worker, or uvicorn).
Defaults to production settings.

Django's own handler runs a request's sync code (sync views, sync hooks, and
``response.close``, where ``request_finished`` fires) in a thread started for that
request alone, so every request paid for a new thread and, without a thread that
outlives it, for a connection from a pool. ``Handler`` gives that work to the worker's
bounded pool of threads instead (kernel.blocking.shared_threads), each keeping its
connection as a threaded WSGI server's threads did. Each call there is one sync unit
(a view with its transactions, a hook): calls of one request may run in different
threads of the pool, and a request that awaits between them (a waiting pull, a job
wait, an event stream) holds no thread meanwhile.

Django's two receivers of ``request_started`` are sync and would take a thread at the
start of every request, a waiting pull's too; they tidy the connections and query log
of the thread they run in, which the pool does after every call anyway, so they are
disconnected here."""

from __future__ import annotations

import asyncio
import os
from contextlib import suppress
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from flashq_project.asgiserver import AccessLog
from kernel.blocking import shared_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashq_project.settings.production")
django.setup(set_prefix=False)


class Handler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with ThreadSensitiveContext(executor=shared_threads()):
            await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's own (5.2), but for where a finished response is closed."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            await self._close(error_response)
            return

        async def process_request(request: Any, send: Any) -> Any:
            response = await self.run_get_response(request)
            with suppress(asyncio.CancelledError):  # the client went away meanwhile
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it raises nothing unexpected.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # a view may handle its cancellation
                with suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await self._close(response)
        body_file.close()

    @staticmethod
    async def _close(response: HttpResponseBase) -> None:
        """A streaming response's iterator may do anything when closed: in a thread, as
        Django does. Any other has nothing to close but its ``request_finished``, whose
        only receiver tidies the connections of the thread it runs in: the event loop's
        thread has none (the pool tidies its own after every call), so it runs here,
        without a hop to a thread and back."""
        if response.streaming:
            await sync_to_async(response.close)()
        else:
            response.close()


application = AccessLog(Handler())
request_started.disconnect(reset_queries)
request_started.disconnect(close_old_connections)

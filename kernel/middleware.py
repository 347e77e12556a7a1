"""The base of our middleware: sync and async capable, so that under the ASGI server the
chain stays async and an async view (a waiting pull) is never wrapped in a thread.
Under ASGI ``get_response`` is a coroutine function and the instance is marked as one:
``__call__`` then returns an awaitable (a subclass that must touch the response
afterwards branches on ``is_async`` to a coroutine of its own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class EitherMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)  # type: ignore[type-var]

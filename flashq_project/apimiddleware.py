"""Django's own middleware, with no thread for an API call under ASGI.

Django's middleware is async capable, but in async mode it runs each hook (and CSRF's
``process_view``) through ``sync_to_async``: the first such call starts the request's
own thread, which Django keeps until the request ends, so a waiting pull would hold an
idle thread for its whole wait. For a call to ``/api/`` these hooks do no I/O (no
session, no messages and no CSRF check is used there: the API authenticates tokens and
its views are CSRF exempt), so they run inline on the event loop; so do the probes'
and ``/metrics``' (each hook's hop to a thread costs more than the probe itself).
Everything else (the admin, whose views are sync and use sessions) takes Django's own
path, thread and all.
Under WSGI and the test client nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

#: The paths whose hooks run inline: the API, and the probes and metrics (token or
#: address checks of their own, no session).
INLINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")


class _InlineForApi:
    """Mixed into a ``MiddlewareMixin`` subclass, before it."""

    async_mode: bool
    get_response: Callable[[HttpRequest], Any]

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        view_hook = getattr(self, "process_view", None)
        if self.async_mode and view_hook is not None:
            sync_hook = view_hook

            async def process_view(request: HttpRequest, *args: Any) -> Any:
                if request.path.startswith(INLINE_PATHS):
                    return sync_hook(request, *args)
                return await sync_to_async(sync_hook, thread_sensitive=True)(request, *args)

            # Django adapts a coroutine hook without a thread.
            self.__dict__["process_view"] = process_view

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith(INLINE_PATHS):
            response: HttpResponseBase = await super().__acall__(request)  # type: ignore[misc]
            return response
        answer: HttpResponseBase | None = None
        if hasattr(self, "process_request"):
            answer = self.process_request(request)
        if answer is None:
            answer = await self.get_response(request)
        if hasattr(self, "process_response"):
            answer = self.process_response(request, answer)
        assert answer is not None
        return answer


class ApiSecurityMiddleware(_InlineForApi, SecurityMiddleware):
    pass


class ApiSessionMiddleware(_InlineForApi, SessionMiddleware):
    pass


class ApiCommonMiddleware(_InlineForApi, CommonMiddleware):
    pass


class ApiCsrfViewMiddleware(_InlineForApi, CsrfViewMiddleware):
    pass


class ApiAuthenticationMiddleware(_InlineForApi, AuthenticationMiddleware):
    pass


class ApiMessageMiddleware(_InlineForApi, MessageMiddleware):
    """No message storage for an API call: nothing there adds or reads a message, and
    setting up the storage (a cookie signer and a session store) costs every call."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(INLINE_PATHS):
            response: HttpResponseBase = await self.get_response(request)
            return response
        return await super().__acall__(request)


class ApiXFrameOptionsMiddleware(_InlineForApi, XFrameOptionsMiddleware):
    pass

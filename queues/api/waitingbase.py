"""The base of the routes that may wait (a long-polling pull, a job wait): served by an
async view, so that the wait holds no server thread.

The route's URL callback is an async function, yet its ``view_class`` is an ordinary
``FlashqApiView`` subclass: drf-spectacular describes it like any other, and the handler
(``post``, ``get``) is the same parse -> authorize -> service -> render. DRF's dispatch
runs as it always does (authentication, network and rate checks, the handler, errors
turned into problems, the refusal's event), in a short-lived thread (kernel.blocking).
A handler that must wait returns ``Parked`` instead of a response: its ``wait`` is
awaited on the event loop, and its ``render`` (or, if the wait raised, the usual
exception handling) runs in another short thread and finishes the response exactly as
the dispatch would have.

A client that hangs up while the dispatch runs cancels the view, but not the dispatch's
thread: the view waits for it (shielded), then gives back what it made, since nobody
else will. A response is closed (an event stream gives back its long-poll slot); a
``Parked`` runs its ``abandon`` (the call's one audit event, as a wait cut short
writes it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response

from kernel.blocking import blocking

from .base import FlashqApiView

T = TypeVar("T")


@dataclass(frozen=True)
class Parked(Generic[T]):
    """A handler's answer when it has to wait: ``wait()`` is awaited without a thread,
    then ``render(result)`` makes the response. ``abandon()`` (in a thread) writes the
    call's event when its client hung up before the wait began."""

    wait: Callable[[], Awaitable[T]]
    render: Callable[[T], Response]
    abandon: Callable[[], object]


class WaitingApiView(FlashqApiView):
    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        drf_view = super().as_view(**initkwargs)

        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            self = cls(**initkwargs)
            self.setup(request, *args, **kwargs)
            dispatching = asyncio.ensure_future(blocking(self.dispatch, request, *args, **kwargs))
            try:
                answer = await asyncio.shield(dispatching)
            except asyncio.CancelledError:
                await _given_back(dispatching)
                raise
            if not isinstance(answer, Parked):
                return answer
            try:
                result = await answer.wait()
            except Exception as exc:  # answered as the dispatch would have (a 503, ...)
                failed = exc
                return await blocking(self._finish, lambda: self._raise(failed))
            return await blocking(self._finish, lambda: answer.render(result))

        # What Django, DRF and drf-spectacular look for on a view function.
        for name in ("view_class", "view_initkwargs", "cls", "initkwargs", "csrf_exempt"):
            setattr(view, name, getattr(drf_view, name))
        return view

    @staticmethod
    def _raise(exc: Exception) -> Response:
        raise exc

    def _finish(self, respond: Callable[[], Response]) -> HttpResponseBase:
        """The end of DRF's dispatch, for a parked handler."""
        try:
            response = respond()
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(self.request, response, *self.args, **self.kwargs)
        return self.response

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Parked):
            return response  # finalized once the wait is over (_finish)
        return super().finalize_response(request, response, *args, **kwargs)


async def _given_back(dispatching: asyncio.Future[Any]) -> None:
    """After the view was cancelled: wait for the dispatch's thread, then close its
    response or abandon its wait."""
    await asyncio.wait([dispatching])
    if dispatching.cancelled() or dispatching.exception() is not None:
        return
    answer = dispatching.result()
    if isinstance(answer, Parked):
        await blocking(answer.abandon)
    else:
        await blocking(answer.close)

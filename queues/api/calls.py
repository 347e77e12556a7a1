"""What every API call does, whichever view serves it: the DRF views (base.FlashqApiView)
and the plain push view (pushview) share it, so a check or an event can never differ
between them. Who is calling and what they may do, the checks made before the handler
runs, what a refusal turns into, and the end of every call: its metrics, its RateLimit
headers and, for a refusal or an error, its one audit event, written in its own
transaction after whatever the call began has rolled back (a success already has its
event, written by its service)."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponseBase
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied

from compliance.audit import Actor, ActorKind, audit_refusal
from compliance.audit.actors import request_actor
from compliance.audit.floods import record_throttled_refusal
from kernel.clientip import address_allowed, client_ip
from kernel.counters import observe_request
from kernel.limits import PATTERN_RE, QUEUE_NAME_RE, QUEUE_NAME_RULE
from kernel.problems import (
    CardNumberDetected,
    FieldError,
    InvalidInput,
    LengthRequired,
    PayloadUnreadable,
    RateLimited,
    ServiceUnavailable,
)
from kernel.ratelimit import Decision, count_auth_failure, rate_take
from security.access import Principal, Verb
from security.authentication import AuthThrottled, TokenRefused, record_last_use
from security.cards import card_problem, find_cards_in_text, has_card_number
from security.encryption import DecryptionFailed

from .. import selectors
from ..errors import JobNotFound
from .auditpaths import audit_paths
from .operations import Operation

logger = logging.getLogger("flashq.api")


class ApiCall:
    """One call's state and the steps every view takes. A view sets ``request`` and
    ``kwargs``, calls ``refuse_outside_addresses``, authenticates (``caller``), then
    ``admit``; a refusal goes through ``refusal_for``; every answer through ``finish``."""

    #: HTTP method -> the operation it performs.
    operations: ClassVar[dict[str, Operation]] = {}
    request: Any  # an HttpRequest, or DRF's Request around one
    kwargs: Any
    caller: Principal | None = None  # set once authentication succeeded
    _refusal_recorded = False
    _audit_queue = ""
    _audit_job_ids: list[uuid.UUID] | None = None
    _refusal_details: dict[str, str] | None = None
    _rate: Decision | None = None
    _throttled_ip = False
    _started = 0.0

    @property
    def principal(self) -> Principal:
        assert self.caller is not None  # authentication ran before any handler
        return self.caller

    @property
    def operation(self) -> Operation:
        """This call's operation; a method the route lacks is recorded under the
        route's first operation (with its status, 405)."""
        method = (self.request.method or "").lower()
        method = "get" if method == "head" else method
        return self.operations.get(method) or next(iter(self.operations.values()))

    def actor(self) -> Actor:
        if self.caller is None:
            return request_actor(self.request, kind=ActorKind.ANONYMOUS)
        return request_actor(
            self.request, kind=ActorKind.TOKEN, name=self.caller.name, token_id=self.caller.token_id
        )

    # -- refusals and errors -------------------------------------------------------------

    def record_refusal(self, status: int, data: Any) -> None:
        if self._refusal_recorded:
            return
        self._refusal_recorded = True
        details: dict[str, Any] = dict(self._refusal_details or {})
        if isinstance(data, dict):
            details["code"] = str(data.get("code", ""))[:64]
            paths = audit_paths(str(error.get("path", "")) for error in data.get("errors", []))
            if paths:
                details["paths"] = paths
        job_id = str(self.kwargs.get("job_id", ""))
        job_ids: list[object] = [*(self._audit_job_ids or [])]
        if not job_ids and _is_uuid(job_id):
            job_ids = [job_id]
        queue = self._audit_queue or str(self.kwargs.get("queue", ""))
        audit_refusal(
            actor=self.actor(),
            action=self.operation.action,
            status=status,
            queue=queue if _fit_for_the_trail(queue) else "",
            job_ids=job_ids,
            details=details,
        )

    def refusal_for(self, exc: Exception) -> Exception:
        """The exception to answer for ``exc``, its details noted for the event."""
        if isinstance(exc, NotAuthenticated | AuthenticationFailed):
            exc = self._count_auth_failure(exc)
        elif isinstance(exc, AuthThrottled):
            self._throttled_ip = True
        if isinstance(exc, CardNumberDetected) and exc.masked:
            # At most the first 6 and last 4 digits of each: enough to find the source.
            self._refusal_details = {"cards": ", ".join(exc.masked[:10])}
        if isinstance(exc, TokenRefused):
            self._refusal_details = {"auth": exc.reason}
            if exc.public_id:
                self._refusal_details["public_id"] = exc.public_id
        if isinstance(exc, DecryptionFailed):
            # Names the job, field and key id, never a value; the caller gets the job.
            logger.error("%s", exc)
            exc = PayloadUnreadable(
                f"Job {exc.job_id}'s stored {exc.field} cannot be decrypted; "
                "the operator will find the cause in the server log."
            )
        if isinstance(exc, OperationalError | InterfaceError):
            # Down, restarting, out of connections, locked: the transaction rolled
            # back, so a retry is safe. Its cause goes to the server log only.
            logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            exc = ServiceUnavailable()
        return exc

    def _count_auth_failure(self, exc: Exception) -> Exception:
        """Every failed authentication counts against its address; past the limit the
        answer is 429 (and the token, if any, was not even checked next time)."""
        counted = count_auth_failure(client_ip(self.request))
        if counted.allowed:
            return exc
        self._throttled_ip = True
        return AuthThrottled(counted)

    def finish(self, response: HttpResponseBase, data: Any, seconds: float) -> None:
        """Every answer passes here (``data``: its body, for a refusal's event); a
        refusal or an error gets its event now."""
        observe_request(
            operation=self.operation.action,
            status=response.status_code,
            seconds=seconds,
            auth_reason=(self._refusal_details or {}).get("auth", ""),
        )
        if self._rate is not None:
            response["RateLimit-Limit"] = str(self._rate.limit)
            response["RateLimit-Remaining"] = str(self._rate.remaining)
            response["RateLimit-Reset"] = str(math.ceil(self._rate.reset_s))
        if self._throttled_ip:
            # An address throttled for failed authentications: see compliance.audit.floods.
            record_throttled_refusal(
                actor=self.actor(),
                action=self.operation.action,
                status=429,
                details={"code": "rate_limited"},
            )
        elif response.status_code >= 400:
            self.record_refusal(response.status_code, data)

    # -- input and access ------------------------------------------------------------

    def refuse_outside_addresses(self) -> None:
        """An address outside ALLOWED_CIDRS is refused before any token work."""
        if not address_allowed(client_ip(self.request), tuple(settings.ALLOWED_CIDRS)):
            self._refusal_details = {"network": "outside the allowed addresses"}
            raise PermissionDenied("Calls are not accepted from this address.")

    def admit(self) -> None:
        """The checks after authentication (an anonymous call is refused before this):
        the token's addresses, its last use, its rate, the request id, the body's
        length."""
        self._check_network()
        if self.caller is not None:
            record_last_use(self.caller, client_ip(self.request))
        self._check_rate()
        self._refuse_card_request_id()
        # WSGI gives Django no body without a Content-Length, so a chunked request
        # would run silently as if it had none (a pull with default parameters).
        chunked = "chunked" in self.request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not self.request.META.get("CONTENT_LENGTH"):
            raise LengthRequired("Send the body with a Content-Length, not chunked.")

    def _check_rate(self) -> None:
        principal = self.caller
        if principal is None or principal.rate is None:
            return
        # Keyed by family: a rotated twin shares its predecessor's budget.
        key = f"rate:{principal.key}"
        self._rate = rate_take(key=key, rate=principal.rate)
        if not self._rate.allowed:
            raise RateLimited(
                "This token is over its rate limit; retry later.",
                retry_after_s=self._rate.retry_after_s,
                limit=self._rate.limit,
                reset_s=self._rate.reset_s,
            )

    def _refuse_card_request_id(self) -> None:
        """An ``X-Request-ID`` holding a card number (flashq_project.requestid dropped
        it): the same 422 as a card number in a body, refused and audited once the
        caller is known."""
        cards = self.request.META.get("FLASHQ_REQUEST_ID_CARDS")
        if cards:
            raise CardNumberDetected(
                "Card numbers may not be sent in a request id.",
                errors=[FieldError("/headers/X-Request-ID", "holds a payment card number")],
                masked=list(cards),
            )

    def _check_network(self) -> None:
        """A call from outside the global or the token's allow-list is refused, even
        with a valid secret."""
        networks = self.caller.networks if self.caller is not None else ()
        allowed = tuple(settings.ALLOWED_CIDRS)
        if not address_allowed(client_ip(self.request), allowed, networks):
            self._refusal_details = {"network": "outside the allowed addresses"}
            raise PermissionDenied("This token may not be used from this address.")

    def queue_name(self) -> str:
        name = str(self.kwargs["queue"])
        if not QUEUE_NAME_RE.fullmatch(name):
            raise InvalidInput(f"Invalid queue name: {QUEUE_NAME_RULE}.")
        _refuse_card_in_queue(name)
        return name

    def queue_pattern(self) -> str:
        """The route's queue as a pattern (``*`` allowed), e.g. for clean."""
        pattern = str(self.kwargs["queue"])
        if not PATTERN_RE.fullmatch(pattern):
            raise InvalidInput(
                "Invalid queue pattern: 1 to 128 letters, digits, _ . : - and * (any run)."
            )
        _refuse_card_in_queue(pattern)
        self._audit_queue = pattern if QUEUE_NAME_RE.fullmatch(pattern) else ""
        return pattern

    def audit_jobs(self, job_ids: list[uuid.UUID]) -> None:
        """Name these jobs in this call's event should it end in a refusal."""
        self._audit_job_ids = job_ids

    def authorize(self, queue: str) -> None:
        """The caller may perform this operation on ``queue``, or PermissionDenied."""
        self._audit_queue = queue
        verb = self.operation.verb
        if verb is None or not self.principal.allows(verb, queue):
            raise PermissionDenied(f"This token may not {verb} on this queue.")

    def readable(self, queue: str) -> bool:
        """Whether the caller may read (getJob) jobs of ``queue``: the jobs a push's
        ``depends_on`` may name, the children a listing shows."""
        return self.principal.allows(Verb.GET_JOB, queue)

    def job_id(self) -> uuid.UUID:
        raw = str(self.kwargs["job_id"])
        if not _is_uuid(raw):
            raise JobNotFound()
        return uuid.UUID(raw)

    def authorize_job(self, job_id: uuid.UUID) -> str:
        """The job's queue, once the caller may perform this operation there. A job in a
        queue the token cannot see at all is reported as not found, not as forbidden."""
        queue = selectors.job_queue_name(job_id=job_id)
        if not self.principal.sees(queue):
            raise JobNotFound()
        self.authorize(queue)
        return queue


def _refuse_card_in_queue(name: str) -> None:
    """A queue name is stored (a push creates its queue) and shown to everyone who may
    see the queue: no card number in it, whatever the route."""
    refused = card_problem(find_cards_in_text(name, "/queue"))
    if refused is not None:
        raise refused


def _fit_for_the_trail(queue: str) -> bool:
    """A route's queue name is recorded with a refusal only if it is a queue name, and
    not one holding a card number."""
    return QUEUE_NAME_RE.fullmatch(queue) is not None and not has_card_number(queue)


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True

"""The base of every API view: who is calling, what they may do, and exactly one audit
event per call. An allowed call records its event inside the transaction of its change
(``audited``); a call that ends in an error records one in its own transaction, after
the change (if any) rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.db import transaction
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.audit import Actor, audit_record
from security.access import Principal
from security.clientip import client_ip

from .. import selectors
from ..errors import InvalidInput, JobNotFound, LengthRequired
from ..models import QUEUE_NAME_RE, QUEUE_NAME_RULE


@dataclass
class AuditNote:
    status: int
    queue: str = ""
    job_ids: list[Any] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class FlashqApiView(APIView):
    #: HTTP method -> audit action (the operation's name in DESIGN.md).
    actions: ClassVar[dict[str, str]] = {}
    # No OPTIONS metadata: it would answer without an operation or an audit event.
    metadata_class = None
    _audited = False
    _audit_queue = ""

    @property
    def principal(self) -> Principal:
        auth = self.request.auth
        assert isinstance(auth, Principal)  # IsAuthenticated ran before any handler
        return auth

    @property
    def action_name(self) -> str:
        method = (self.request.method or "").lower()
        return self.actions.get("get" if method == "head" else method, method)

    def actor(self) -> Actor:
        auth = getattr(self.request, "auth", None) if hasattr(self, "request") else None
        principal = auth if isinstance(auth, Principal) else None
        return Actor(
            name=principal.name if principal else "",
            token_id=principal.token_id if principal else None,
            client_ip=client_ip(self.request),
            request_id=self.request.META.get("FLASHQ_REQUEST_ID", ""),
        )

    # -- audit ---------------------------------------------------------------------

    def audit_ok(self, note: AuditNote) -> None:
        """Record this call's event in the current transaction."""
        audit_record(
            actor=self.actor(),
            action=self.action_name,
            status=note.status,
            queue=note.queue,
            job_ids=note.job_ids,
            details=note.details,
        )

    def mark_audited(self) -> None:
        """Call once the transaction holding ``audit_ok``'s event has committed."""
        self._audited = True

    @contextmanager
    def audited(self, *, status: int, queue: str = "") -> Iterator[AuditNote]:
        note = AuditNote(status=status, queue=queue)
        with transaction.atomic():
            yield note
            self.audit_ok(note)
        self.mark_audited()

    def _audit_unrecorded(self, status: int, data: Any) -> None:
        """Record the call in its own transaction unless its event is already in."""
        if self._audited:
            return
        details: dict[str, Any] = {}
        if status >= 400 and isinstance(data, dict):
            details["code"] = data.get("code", "")
            # Paths may carry client-chosen key names: bounded, so a request cannot
            # write megabytes into the append-only trail.
            paths = [str(error["path"])[:200] for error in data.get("errors", [])]
            if paths:
                details["paths"] = paths[:20]
        job_id = self.kwargs.get("job_id", "") if hasattr(self, "kwargs") else ""
        queue = self._audit_queue or (
            self.kwargs.get("queue", "") if hasattr(self, "kwargs") else ""
        )
        with transaction.atomic():
            audit_record(
                actor=self.actor(),
                action=self.action_name,
                status=status,
                queue=queue[:128] if QUEUE_NAME_RE.fullmatch(queue) else "",
                job_ids=[job_id] if _is_uuid(job_id) else [],
                details=details,
            )
        self._audited = True

    def handle_exception(self, exc: Exception) -> Response:
        try:
            return super().handle_exception(exc)
        except Exception:
            self._audit_unrecorded(500, {"code": "internal_error"})
            raise

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        """Every answer passes here: refusals and errors get their event now."""
        response = super().finalize_response(request, response, *args, **kwargs)
        self._audit_unrecorded(response.status_code, getattr(response, "data", None))
        return response

    # -- input and access ------------------------------------------------------------

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # WSGI gives Django no body without a Content-Length, so a chunked request
        # would run silently as if it had none (a pull with default parameters).
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.META.get("CONTENT_LENGTH"):
            raise LengthRequired("Send the body with a Content-Length, not chunked.")

    def queue_name(self) -> str:
        name = str(self.kwargs["queue"])
        if not QUEUE_NAME_RE.fullmatch(name):
            raise InvalidInput(f"Invalid queue name: {QUEUE_NAME_RULE}.")
        return name

    def authorize(self, verb: str, queue: str) -> None:
        self._audit_queue = queue
        if not self.principal.allows(verb, queue):
            raise PermissionDenied(f"This token may not {verb} on this queue.")

    def job_id(self) -> uuid.UUID:
        raw = str(self.kwargs["job_id"])
        if not _is_uuid(raw):
            raise JobNotFound()
        return uuid.UUID(raw)

    def authorize_job(self, verb: str, job_id: uuid.UUID) -> str:
        """The job's queue, once the caller may ``verb`` there. A job in a queue the
        token cannot see at all is reported as not found, not as forbidden."""
        queue = selectors.job_queue_name(job_id=job_id)
        if not self.principal.sees(queue):
            raise JobNotFound()
        self.authorize(verb, queue)
        return queue


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True

"""The audit record. Floor 1: knows nothing of jobs; takes plain values.

Services call ``audit_record`` inside their own atomic block, so a change and its event
commit together or not at all (Zulip's ``do_*`` + ``RealmAuditLog`` pattern). Once the
transaction commits, the same event is logged as one JSON line on ``flashq.audit``.
``audit_refusal`` records a call that changed nothing (a denial or an error) in a
transaction of its own; if even that cannot be stored (the database is down) the event
still reaches the log, marked as not persisted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from kernel.counters import count_event
from kernel.rows import insert_columns, insert_params

from .models import AuditEvent

logger = logging.getLogger("flashq.audit")


class Action(StrEnum):
    """What an event records. API operations use their verb's name."""

    PUSH = "push"
    PULL = "pull"
    ACK = "ack"
    FAIL = "fail"
    PROGRESS = "progress"
    GET_JOB = "getJob"
    GET_JOBS = "getJobs"
    CANCEL = "cancel"
    UPDATE = "update"
    RETRY = "retry"
    LIST_QUEUES = "listQueues"
    ME = "me"
    STATS = "stats"
    PAUSE = "pause"
    RESUME = "resume"
    SET_RATE_LIMIT = "setRateLimit"
    REMOVE_RATE_LIMIT = "removeRateLimit"
    SET_SCHEMA = "setSchema"
    REMOVE_SCHEMA = "removeSchema"
    SET_CONCURRENCY = "setConcurrency"
    REMOVE_CONCURRENCY = "removeConcurrency"
    SET_GROUP_CONCURRENCY = "setGroupConcurrency"
    REMOVE_GROUP_CONCURRENCY = "removeGroupConcurrency"
    RELEASE = "release"
    SNOOZE = "snooze"
    PROMOTE = "promote"
    RETRY_FAILED = "retryFailed"
    GET_SCHEDULE = "getSchedule"
    GET_SCHEDULES = "getSchedules"
    SCHEDULE_SAVE = "schedule.save"
    SCHEDULE_DELETE = "schedule.delete"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    SCHEDULE_TRIGGER = "schedule.trigger"
    #: The scheduler pushed a tick's job (system actor); details name the tick.
    SCHEDULE_FIRE = "schedule.fire"
    #: A flow: a parent job and its tree of children, pushed in one transaction.
    FLOW_PUSH = "flow.push"
    #: A flow cancelled as a whole (its root and every unfinished job under it).
    FLOW_CANCEL = "flow.cancel"
    GET_JOB_CHILDREN = "getJobChildren"
    #: A client waited for a job to finish (GET /jobs/{id}/wait).
    WAIT_JOB = "waitJob"
    #: A client opened an event stream (GET /queues/{pattern}/events).
    SUBSCRIBE_EVENTS = "subscribeEvents"
    GET_WEBHOOKS = "getWebhooks"
    GET_WEBHOOK = "getWebhook"
    #: A webhook created or replaced (its url and events in details, never its secret).
    WEBHOOK_SAVE = "webhook.save"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_ROTATE_SECRET = "webhook.rotateSecret"  # noqa: S105 (an action, not a secret)
    #: A webhook switched off after too many failed deliveries in a row (system actor).
    WEBHOOK_DISABLE = "webhook.disable"
    #: A job's processing deadline passed: a failed attempt with code ``timeout``.
    TIMEOUT = "timeout"
    UNKNOWN_ROUTE = "unknownRoute"
    LEASE_RECOVER = "lease.recover"
    TTL_EXPIRE = "ttl.expire"
    ADMIN_LOGIN = "admin.login"
    ADMIN_LOGIN_FAILED = "admin.loginFailed"
    ADMIN_LOCKOUT = "admin.lockout"
    QUEUE_CREATE = "queue.create"
    QUEUE_UPDATE = "queue.update"
    TOKEN_CREATE = "token.create"  # noqa: S105 (an action, not a secret)
    TOKEN_UPDATE = "token.update"  # noqa: S105 (an action, not a secret)
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 (an action, not a secret)
    TOKEN_ROTATE = "token.rotate"  # noqa: S105 (an action, not a secret)
    TOKEN_DELETE = "token.delete"  # noqa: S105 (an action, not a secret)
    KEYS_ROTATE = "keys.rotate"
    CLEAN = "clean"
    DELETE = "delete"
    LEGAL_HOLD = "queue.legalHold"
    QUEUE_GRANT = "queue.grant"
    QUEUE_REVOKE = "queue.revoke"
    RETENTION_POLICY_SAVE = "retention.policySave"
    RETENTION_POLICY_DELETE = "retention.policyDelete"
    GDPR_ERASE = "gdpr.erase"
    GDPR_ERASE_PREVIEW = "gdpr.erasePreview"
    AUDIT_EXPORT = "audit.export"
    AUDIT_RETIRE = "audit.retire"
    METRICS = "metrics"
    ADMIN_JOB_VIEW = "admin.jobView"
    ADMIN_JOB_SEARCH = "admin.jobSearch"
    ADMIN_REVEAL = "admin.reveal"
    STAFF_GROUP_ADD = "staff.groupAdd"
    STAFF_GROUP_REMOVE = "staff.groupRemove"
    STAFF_GROUP_RENAME = "staff.groupRename"
    STAFF_FLAG_CHANGE = "staff.flagChange"
    STAFF_PERMISSION_CHANGE = "staff.permissionChange"
    STAFF_GRANT = "staff.grant"
    STAFF_GRANT_REMOVE = "staff.grantRemove"
    ROLES_SETUP = "roles.setup"
    ACCESS_REVIEW = "access.review"
    DB_RUNTIME_ROLE_GRANT = "db.runtimeRoleGrant"


class ActorKind(StrEnum):
    TOKEN = "token"  # noqa: S105 (a kind of actor)
    USER = "user"
    COMMAND = "command"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Actor:
    """Who acted (an API token, a staff user, a management command or the system
    itself), from where, in which request."""

    kind: ActorKind
    name: str = ""
    token_id: int | None = None
    user_id: int | None = None
    client_ip: str | None = None
    request_id: str = ""
    client_request_id: str = ""

    @property
    def label(self) -> str:
        """``token:billing-worker``, ``user:alice``, ``command:create_token``, ..."""
        return f"{self.kind}:{self.name}" if self.name else str(self.kind)

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(ActorKind.COMMAND, name)

    @classmethod
    def system(cls, task: str, *, request_id: str = "") -> Actor:
        return cls(ActorKind.SYSTEM, task, request_id=request_id)


def outcome_for_status(status: int) -> str:
    if status < 400:
        return AuditEvent.Outcome.OK
    if status in (401, 403, 429):
        return AuditEvent.Outcome.DENIED
    if status == 404:
        return AuditEvent.Outcome.NOT_FOUND
    if status == 409:
        return AuditEvent.Outcome.CONFLICT
    if status < 500:
        return AuditEvent.Outcome.INVALID
    return AuditEvent.Outcome.ERROR


def _storable(value: Any) -> Any:
    """No NUL and no lone surrogate may reach the jsonb column, or the audit write itself
    would fail; details are built from API-defined values, this is the last guard."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def audit_event(
    *,
    actor: Actor,
    action: Action,
    status: int = 200,
    queue: str = "",
    job_ids: Iterable[object] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """An event, not yet written: ``audit_record`` writes one; a service that writes its
    change and its event in one statement uses ``audit_insert``."""
    return AuditEvent(
        created_at=timezone.now(),
        action=action,
        queue=queue,
        job_ids=[str(job_id) for job_id in job_ids],
        token_id=actor.token_id,
        user_id=actor.user_id,
        actor=actor.label[:150],
        client_ip=actor.client_ip,
        outcome=outcome_for_status(status),
        status=status,
        request_id=actor.request_id,
        client_request_id=actor.client_request_id,
        details=_storable(dict(details or {})),
    )


def audit_record(
    *,
    actor: Actor,
    action: Action,
    status: int = 200,
    queue: str = "",
    job_ids: Iterable[object] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Record an event in the caller's transaction (services call this inside their
    atomic block); it is logged once that transaction commits."""
    event = audit_event(
        actor=actor, action=action, status=status, queue=queue, job_ids=job_ids, details=details
    )
    sql, params = audit_insert(event)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        [(pk,)] = cursor.fetchall()
    audit_inserted(event, pk)
    return event


def audit_insert(event: AuditEvent) -> tuple[str, list[Any]]:
    """``INSERT ... RETURNING id`` for ``event``, to run alone or as part of a larger
    statement (the push writes its job and its event in one); the values go through
    the fields as ``save()`` would send them. Then call ``audit_inserted`` with the id."""
    _, sql = insert_columns(AuditEvent)
    return f"{sql} RETURNING {connection.ops.quote_name('id')}", insert_params(event)


def audit_inserted(event: AuditEvent, pk: int) -> None:
    """``event`` was written with id ``pk`` in the current transaction: it is logged
    once that commits (at once outside a transaction)."""
    event.pk = pk
    event._state.adding = False
    transaction.on_commit(lambda: _committed(event))


def _committed(event: AuditEvent) -> None:
    """The event is in the trail: log it, and move the metrics it stands for."""
    logger.info(_json_line(event, persisted=True))
    try:
        count_event(
            action=event.action,
            queue=event.queue,
            job_ids=event.job_ids,
            details=event.details,
            outcome=event.outcome,
        )
    except Exception:  # a metrics file that cannot grow must not fail a committed call
        logging.getLogger("flashq.metrics").exception("event %s not counted", event.pk)


def audit_refusal(
    *,
    actor: Actor,
    action: Action,
    status: int,
    queue: str = "",
    job_ids: Iterable[object] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent | None:
    """Record a call that changed nothing, in its own transaction. When the database
    cannot take it, the event is logged anyway (``persisted: false``) and None is
    returned: a refusal must never turn into a second failure."""
    event = audit_event(
        actor=actor, action=action, status=status, queue=queue, job_ids=job_ids, details=details
    )
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except DatabaseError:
        logger.error(_json_line(event, persisted=False))
        return None
    _committed(event)
    return event


RECORDED_FIELDS = (
    "action",
    "queue",
    "job_ids",
    "token_id",
    "user_id",
    "actor",
    "client_ip",
    "outcome",
    "status",
    "request_id",
    "client_request_id",
    "details",
)


def recorded(event: AuditEvent) -> dict[str, Any]:
    """What an event says (beyond its id and time): the log line and the hash chain
    both take it from here."""
    return {name: getattr(event, name) for name in RECORDED_FIELDS}


def _json_line(event: AuditEvent, *, persisted: bool) -> str:
    return json.dumps(
        {
            "time": event.created_at.isoformat(),
            "event_id": event.pk,
            **recorded(event),
            "persisted": persisted,
        },
        separators=(",", ":"),
    )

"""Writes of the queue engine, one module per sub-domain. Plain functions,
keyword-only arguments.

- ``push``: new jobs, one or a batch (with ``depends_on``);
- ``flows``: a parent job and its tree of children, in one transaction;
- ``reports``: what workers report (ack, fail, progress), checked against the lease;
- ``actions``: what producers and operators do to a job (cancel, update, promote,
  retry, retry the failed of a queue, delete); cancelling, deleting and retrying reach
  a flow's children (queues.dependents, queues.flowretry);
- ``flow_cancel``: cancelling a whole flow, from any job in it;
- ``handback``: a worker giving back a job it holds (release, snooze), uncounted;
- ``queue_settings``: a queue's settings (create, update, pause, limits, schema, hold);
- ``keys``: re-sealing payloads under the primary key;
- ``grants``: staff rights on one queue;
- ``clean``: deleting finished jobs (the API's clean, and retention's batches);
- ``schedules``, ``schedule_fire``: repeatable jobs, and the tick engine firing them;
- ``webhooks``: a queue's webhooks, and the outcome of each delivery (queues.webhooks
  queues and sends them);
- ``common``: the job lookup and the payload guards the others share.

Every service that changes state takes the ``actor`` who asked and records its audit
event inside its own atomic block, so the change and its event commit together, or
neither does, wherever the call comes from (the API, the admin, a command). The API
calls a service outside any transaction, so its block is the transaction itself (no
savepoint); the admin and tests call it inside one, where it becomes a savepoint and a
failure rolls back only the service's work. Services never call one another. Lease
checks are conditional writes: a stale lease changes nothing. Pull and the recovery of
expired leases live in queues.pulling.

Callers import from here (``from queues import services``); the modules are the map."""

from __future__ import annotations

from ..failures import FAILURE_FIELDS, LEASE_FIELDS, record_failure, release_lease
from ..models import FINISHED
from .actions import (
    RETRYABLE,
    job_cancel,
    job_promote,
    job_retry,
    job_update,
    jobs_delete,
    jobs_retry_failed,
)
from .clean import MAX_CLEAN, Cleaned, finished_before, jobs_clean
from .common import DEADLOCK, deadlock_retried
from .flow_cancel import flow_cancel, flow_root
from .flows import FlowJob, FlowPushed, flow_push, flow_tree
from .grants import QUEUE_ROLES, queue_grant
from .handback import job_release, job_snooze
from .keys import (
    SEALED_FIELDS,
    Resealed,
    ResealedSchedules,
    jobs_reseal,
    schedules_reseal,
    webhooks_reseal,
)
from .push import KEYED_PUSH_TRIES, Pushed, Recorder, job_push, jobs_push
from .queue_settings import (
    queue_create,
    queue_for_update,
    queue_set_concurrency,
    queue_set_group_concurrency,
    queue_set_legal_hold,
    queue_set_paused,
    queue_set_rate_limit,
    queue_set_schema,
    queue_update,
)
from .reports import (
    STALE_LEASE,
    Acked,
    AckSpec,
    check_acks,
    complete_acked,
    job_ack,
    job_fail,
    job_progress,
    jobs_ack,
)
from .schedule_fire import ON_TIME_GRACE, earliest_due, schedules_fire
from .schedules import (
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_save,
    schedule_trigger,
)
from .webhooks import (
    delivery_key_prefix,
    webhook_delete,
    webhook_delivered,
    webhook_rotate_secret,
    webhook_save,
)

__all__ = [
    "DEADLOCK",
    "FAILURE_FIELDS",
    "FINISHED",
    "KEYED_PUSH_TRIES",
    "LEASE_FIELDS",
    "MAX_CLEAN",
    "ON_TIME_GRACE",
    "QUEUE_ROLES",
    "RETRYABLE",
    "SEALED_FIELDS",
    "STALE_LEASE",
    "AckSpec",
    "Acked",
    "Cleaned",
    "FlowJob",
    "FlowPushed",
    "Pushed",
    "Recorder",
    "Resealed",
    "ResealedSchedules",
    "check_acks",
    "complete_acked",
    "deadlock_retried",
    "delivery_key_prefix",
    "earliest_due",
    "finished_before",
    "flow_cancel",
    "flow_push",
    "flow_root",
    "flow_tree",
    "job_ack",
    "job_cancel",
    "job_fail",
    "job_progress",
    "job_promote",
    "job_push",
    "job_release",
    "job_retry",
    "job_snooze",
    "job_update",
    "jobs_ack",
    "jobs_clean",
    "jobs_delete",
    "jobs_push",
    "jobs_reseal",
    "jobs_retry_failed",
    "queue_create",
    "queue_for_update",
    "queue_grant",
    "queue_set_concurrency",
    "queue_set_group_concurrency",
    "queue_set_legal_hold",
    "queue_set_paused",
    "queue_set_rate_limit",
    "queue_set_schema",
    "queue_update",
    "record_failure",
    "release_lease",
    "schedule_delete",
    "schedule_pause",
    "schedule_resume",
    "schedule_save",
    "schedule_trigger",
    "schedules_fire",
    "schedules_reseal",
    "webhook_delete",
    "webhook_delivered",
    "webhook_rotate_secret",
    "webhook_save",
    "webhooks_reseal",
]

"""The API's operations, each with its OpenAPI ``operation_id``, the action its audit
event records, and the verb a token needs (None: any token, the answer is filtered).
Views name a member, so the three can never drift apart or be misspelt."""

from __future__ import annotations

from enum import Enum

from compliance.audit import Action
from security.access import Verb


class Operation(Enum):
    PUSH = ("push", Action.PUSH, Verb.PUSH)
    PUSH_BATCH = ("pushBatch", Action.PUSH, Verb.PUSH)
    PULL = ("pull", Action.PULL, Verb.PULL)
    ACK = ("ack", Action.ACK, Verb.ACK)
    ACK_BATCH = ("ackBatch", Action.ACK, Verb.ACK)
    FAIL = ("fail", Action.FAIL, Verb.FAIL)
    PROGRESS = ("progress", Action.PROGRESS, Verb.PROGRESS)
    GET_JOB = ("getJob", Action.GET_JOB, Verb.GET_JOB)
    GET_JOBS = ("getJobs", Action.GET_JOBS, Verb.GET_JOBS)
    CANCEL = ("cancel", Action.CANCEL, Verb.CANCEL)
    UPDATE = ("update", Action.UPDATE, Verb.UPDATE)
    RETRY = ("retry", Action.RETRY, Verb.RETRY)
    LIST_QUEUES = ("listQueues", Action.LIST_QUEUES, None)
    ME = ("me", Action.ME, None)
    QUEUE_STATS = ("queueStats", Action.STATS, Verb.ADMIN)
    PAUSE = ("pause", Action.PAUSE, Verb.ADMIN)
    RESUME = ("resume", Action.RESUME, Verb.ADMIN)
    SET_RATE_LIMIT = ("setRateLimit", Action.SET_RATE_LIMIT, Verb.ADMIN)
    REMOVE_RATE_LIMIT = ("removeRateLimit", Action.REMOVE_RATE_LIMIT, Verb.ADMIN)
    SET_SCHEMA = ("setSchema", Action.SET_SCHEMA, Verb.ADMIN)
    REMOVE_SCHEMA = ("removeSchema", Action.REMOVE_SCHEMA, Verb.ADMIN)
    SET_CONCURRENCY = ("setConcurrency", Action.SET_CONCURRENCY, Verb.ADMIN)
    REMOVE_CONCURRENCY = ("removeConcurrency", Action.REMOVE_CONCURRENCY, Verb.ADMIN)
    SET_GROUP_CONCURRENCY = ("setGroupConcurrency", Action.SET_GROUP_CONCURRENCY, Verb.ADMIN)
    REMOVE_GROUP_CONCURRENCY = (
        "removeGroupConcurrency",
        Action.REMOVE_GROUP_CONCURRENCY,
        Verb.ADMIN,
    )
    CLEAN = ("clean", Action.CLEAN, Verb.CLEAN)
    # A worker gives back a job it holds, the attempt not counted: the inverse of pull.
    RELEASE = ("release", Action.RELEASE, Verb.PULL)
    SNOOZE = ("snooze", Action.SNOOZE, Verb.PULL)
    PROMOTE = ("promote", Action.PROMOTE, Verb.UPDATE)
    RETRY_FAILED = ("retryFailed", Action.RETRY_FAILED, Verb.RETRY)
    LIST_SCHEDULES = ("listSchedules", Action.GET_SCHEDULES, Verb.SCHEDULE)
    GET_SCHEDULE = ("getSchedule", Action.GET_SCHEDULE, Verb.SCHEDULE)
    PUT_SCHEDULE = ("putSchedule", Action.SCHEDULE_SAVE, Verb.SCHEDULE)
    DELETE_SCHEDULE = ("deleteSchedule", Action.SCHEDULE_DELETE, Verb.SCHEDULE)
    PAUSE_SCHEDULE = ("pauseSchedule", Action.SCHEDULE_PAUSE, Verb.SCHEDULE)
    RESUME_SCHEDULE = ("resumeSchedule", Action.SCHEDULE_RESUME, Verb.SCHEDULE)
    TRIGGER_SCHEDULE = ("triggerSchedule", Action.SCHEDULE_TRIGGER, Verb.SCHEDULE)
    PUSH_FLOW = ("pushFlow", Action.FLOW_PUSH, Verb.PUSH)
    GET_JOB_CHILDREN = ("getJobChildren", Action.GET_JOB_CHILDREN, Verb.GET_JOB)
    WAIT_JOB = ("waitJob", Action.WAIT_JOB, Verb.GET_JOB)
    ERASE = ("createErasure", Action.GDPR_ERASE, Verb.ERASE)
    SUBSCRIBE_EVENTS = ("subscribeEvents", Action.SUBSCRIBE_EVENTS, Verb.GET_JOBS)
    LIST_WEBHOOKS = ("listWebhooks", Action.GET_WEBHOOKS, Verb.ADMIN)
    GET_WEBHOOK = ("getWebhook", Action.GET_WEBHOOK, Verb.ADMIN)
    PUT_WEBHOOK = ("putWebhook", Action.WEBHOOK_SAVE, Verb.ADMIN)
    DELETE_WEBHOOK = ("deleteWebhook", Action.WEBHOOK_DELETE, Verb.ADMIN)
    ROTATE_WEBHOOK_SECRET = ("rotateWebhookSecret", Action.WEBHOOK_ROTATE_SECRET, Verb.ADMIN)

    def __init__(self, operation_id: str, action: Action, verb: Verb | None) -> None:
        self.operation_id = operation_id
        self.action = action
        self.verb = verb

"""Request bodies of single-object operations (DRF serializers that refuse unknown
fields), and the shapes of responses, declared for the OpenAPI schema. Batch bodies are
validated as plain code (queues/jobspec.py, queues/api/batch.py).

- ``fields``: the strict fields and the base serializer the bodies use;
- ``jobs``, ``queues``: each one's bodies and response shapes;
- ``flows``: a flow's body and answer, a job's children, getJob's parent and depends_on;
- ``lifecycle``: update, release, snooze, promote and retry-failed bodies;
- ``webhooks``: a webhook's PUT body and the answers (the secret in two of them);
- ``schedules``: a schedule's PUT body (documented), the reason body, the answer;
- ``me``, ``problems``, ``erasure``: getMe's answer, the problem+json body, and the
  erasure request (compliance.api) with its answer.

Every name is re-exported here: views read ``serializers.PushIn``."""

from __future__ import annotations

from .erasure import (
    ErasureIn,
    ErasureOut,
)
from .fields import (
    ERROR_CODE_PATTERN,
    ErrorCodeField,
    JobDataField,
    JsonObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)
from .flows import (
    FlowChildIn,
    FlowIn,
    FlowNodeOut,
    JobChildrenOut,
    JobReadOut,
    JobWaitOut,
)
from .jobs import (
    MASKED_TEXT,
    AckBatchIn,
    AckBatchOut,
    AckIn,
    AckItemDoc,
    BackoffDoc,
    ErrorEntryOut,
    FailIn,
    JobDetailOut,
    JobPageOut,
    JobsQuery,
    JobSummaryOut,
    JobWaitQuery,
    LeasedJobOut,
    ProgressIn,
    PullIn,
    PullOut,
    PushBatchIn,
    PushBatchOut,
    PushedOut,
    PushIn,
)
from .lifecycle import (
    PromoteIn,
    ReleaseIn,
    RetryFailedIn,
    RetryFailedOut,
    SnoozeIn,
    UpdateIn,
)
from .me import (
    MeOut,
    PermissionOut,
)
from .problems import (
    FieldErrorOut,
    ProblemOut,
)
from .queues import (
    CleanIn,
    CleanOut,
    ConcurrencyIn,
    GroupConcurrencyIn,
    QueueListOut,
    QueueOut,
    QueueStatsOut,
    RateLimitIn,
    RateLimitOut,
    SchemaIn,
)
from .schedules import (
    ReasonIn,
    ScheduleIn,
    ScheduleListOut,
    ScheduleOut,
)
from .webhooks import WebhookCreatedOut, WebhookIn, WebhookListOut, WebhookOut

__all__ = [
    "ERROR_CODE_PATTERN",
    "MASKED_TEXT",
    "AckBatchIn",
    "AckBatchOut",
    "AckIn",
    "AckItemDoc",
    "BackoffDoc",
    "CleanIn",
    "CleanOut",
    "ConcurrencyIn",
    "ErasureIn",
    "ErasureOut",
    "ErrorCodeField",
    "ErrorEntryOut",
    "FailIn",
    "FieldErrorOut",
    "FlowChildIn",
    "FlowIn",
    "FlowNodeOut",
    "GroupConcurrencyIn",
    "JobChildrenOut",
    "JobDataField",
    "JobDetailOut",
    "JobPageOut",
    "JobReadOut",
    "JobSummaryOut",
    "JobWaitOut",
    "JobWaitQuery",
    "JobsQuery",
    "JsonObjectField",
    "LeasedJobOut",
    "MeOut",
    "PermissionOut",
    "ProblemOut",
    "ProgressIn",
    "PromoteIn",
    "PullIn",
    "PullOut",
    "PushBatchIn",
    "PushBatchOut",
    "PushIn",
    "PushedOut",
    "QueueListOut",
    "QueueOut",
    "QueueStatsOut",
    "RateLimitIn",
    "RateLimitOut",
    "ReasonIn",
    "ReleaseIn",
    "RetryFailedIn",
    "RetryFailedOut",
    "ScheduleIn",
    "ScheduleListOut",
    "ScheduleOut",
    "SchemaIn",
    "SnoozeIn",
    "StrictBooleanField",
    "StrictCharField",
    "StrictFloatField",
    "StrictIntegerField",
    "StrictSerializer",
    "UpdateIn",
    "WebhookCreatedOut",
    "WebhookIn",
    "WebhookListOut",
    "WebhookOut",
]

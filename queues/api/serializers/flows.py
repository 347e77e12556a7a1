"""Flows and what a job waits for: the flow body and its answer (trees, so each level
refers to its own component), a job's children, getJob's links (parent, depends_on),
and a client's wait for a job. Documentation only: flows are parsed by
queues.flowspec."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from kernel import limits

from ...models import OnChildFailure
from ...selectors import REPORTED_STATES
from .jobs import JobDetailOut, PushIn

ON_CHILD_FAILURE_TEXT = (
    "What a parent does when one of its children fails for good (failed, cancelled or "
    "expired): `fail` (default) fails the parent with code `child_failed` and cancels its "
    "unfinished children; `ignore` runs the parent once the rest have finished; "
    "`continue` does too, and the parent is meant to look at the failure "
    "(`GET /jobs/{id}/children`). Set for the whole flow at its top, and per node to "
    "override it for that node's own children."
)


@extend_schema_field(
    {
        "type": "array",
        "items": {"$ref": "#/components/schemas/FlowChildInRequest"},
        "maxItems": limits.MAX_FLOW_JOBS - 1,
        "description": "This job's children: each waits in its own queue; this job waits "
        "for all of them.",
    }
)
class _ChildrenIn(serializers.ListField):
    """A node's children: the same component again, one level down."""


@extend_schema_field(
    {"type": "array", "items": {"$ref": "#/components/schemas/FlowNodeOut"}},
)
class _ChildrenOut(serializers.ListField):
    """A node's children in the answer: the same component again."""


class FlowChildIn(serializers.Serializer):
    queue = serializers.CharField(
        max_length=128,
        help_text=f"The child's queue (created on first push): {limits.QUEUE_NAME_RULE}. "
        "The token needs `push` on it.",
    )
    job = PushIn(
        help_text="A push body. Only the flow's root job may have a `key`; no job of a flow "
        "may have `depends_on`."
    )
    children = _ChildrenIn(required=False)
    on_child_failure = serializers.ChoiceField(
        choices=OnChildFailure.values, required=False, help_text=ON_CHILD_FAILURE_TEXT
    )


class FlowIn(serializers.Serializer):
    job = PushIn(
        help_text="The root job, in the route's queue: it waits in `waiting-children` until "
        "its children have finished. Its `key` makes the flow idempotent."
    )
    children = serializers.ListField(
        child=FlowChildIn(),
        min_length=1,
        max_length=limits.MAX_FLOW_JOBS - 1,
        help_text=f"At least one child. The whole flow holds at most {limits.MAX_FLOW_JOBS} "
        f"jobs, its root included, in at most {limits.MAX_FLOW_DEPTH} levels.",
    )
    on_child_failure = serializers.ChoiceField(
        choices=OnChildFailure.values,
        required=False,
        default=OnChildFailure.FAIL,
        help_text=ON_CHILD_FAILURE_TEXT,
    )


class FlowNodeOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    state = serializers.ChoiceField(
        choices=list(REPORTED_STATES),
        help_text="`waiting-children` for a parent, `waiting` (or `delayed`) for a leaf.",
    )
    children = _ChildrenOut(child=serializers.DictField())


class JobChildrenOut(serializers.Serializer):
    children = JobDetailOut(many=True)


class JobReadOut(JobDetailOut):
    parent = serializers.UUIDField(  # type: ignore[assignment]
        allow_null=True,
        help_text="The id of the flow job whose child this is; null outside a flow, or "
        "when that job is in a queue where this token lacks `getJob`.",
    )
    depends_on = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="The ids this job was pushed with in `depends_on` (empty when none), "
        "but for those in queues where this token lacks `getJob`: they are left out.",
    )


class JobWaitOut(JobReadOut):
    finished = serializers.BooleanField(
        help_text="true when the job has finished (completed, failed, cancelled or "
        "expired); false when the wait ended first."
    )

"""Flows: pushing a parent job with its tree of children, and listing a job's children.
A flow reaches several queues: the caller needs ``push`` on each."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from kernel import limits
from security.access import Verb

from .. import reads, services
from ..flowspec import parse_flow
from . import serializers
from .base import FlashqApiView
from .docs import operation_schema, problems
from .operations import Operation
from .representations import flow_tree, job_detail


@extend_schema_view(
    post=operation_schema(
        Operation.PUSH_FLOW,
        request=serializers.FlowIn,
        responses={
            201: serializers.FlowNodeOut,
            200: serializers.FlowNodeOut,
            **problems(409, 413, 415),
        },
        description="Push a flow: a root job in this queue and its tree of children, each "
        "in its own queue (created on first push), in one transaction; the answer is the "
        f"tree of ids. At most {limits.MAX_FLOW_DEPTH} levels (the root's included) and "
        f"{limits.MAX_FLOW_JOBS} jobs, at least one child. The token needs `push` on every "
        "queue of the tree (else 403, nothing written). Every job passes a push's checks "
        "(size caps, the queue's schema, the card guard) and one bad job refuses the flow "
        "with the usual status, naming its path (`/children/2/children/0/job/data`). "
        "Parents wait in `waiting-children` (never handed out) until their children have "
        "finished, then become ready in their own queue; leaves are ready at once in "
        "theirs. Only the root may have a `key`: when an unfinished job of this queue "
        "that this token's family pushed holds it, the answer is that job's tree with "
        "200 (a retry after a lost answer makes no second flow); 409 `key_conflict` when "
        "another family's does. `depends_on` is refused inside a flow.",
    )
)
class QueueFlowsApi(FlashqApiView):
    operations = {"post": Operation.PUSH_FLOW}

    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        root = parse_flow(request.data, queue_name=name, max_bytes=settings.MAX_JOB_BYTES)
        for other in root.queues():
            if not self.principal.allows(Verb.PUSH, other):
                self._refusal_details = {"denied_queue": other}
                raise PermissionDenied(f"This token may not push on the queue {other}.")
        pushed = services.flow_push(root=root, owner=self.principal.key, actor=self.actor())
        return Response(
            flow_tree(pushed.root, timezone.now()), status=201 if pushed.created else 200
        )


@extend_schema_view(
    get=operation_schema(
        Operation.GET_JOB_CHILDREN,
        responses={200: serializers.JobChildrenOut, **problems(404)},
        description="A flow job's children, in the order they were pushed, each as getJob "
        "shows it (state, `result`, `error_code`; masked the same way). Needs `getJob` on "
        "the job's queue (404 or 403 as getJob). Children in queues where this token lacks "
        "`getJob` are left out. A job outside a flow has none.",
    )
)
class JobChildrenApi(FlashqApiView):
    operations = {"get": Operation.GET_JOB_CHILDREN}

    def get(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        queue = self.authorize_job(job_uuid)
        children = reads.job_children_read(
            job_id=job_uuid, queue_name=queue, readable=self.readable, actor=self.actor()
        )
        now = timezone.now()
        return Response({"children": [job_detail(job, self.principal, now) for job in children]})

"""A queue's webhooks: put (create or replace), get, list, delete and rotate-secret, each
needing the ``admin`` verb on the queue. One view per route; each reads parse ->
authorize -> service -> render. The signing secret is answered twice only: by the PUT
that creates the webhook and by a rotation."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from .. import reads, services
from ..models import Webhook
from . import serializers
from .docs import operation_schema, problems
from .named import NamedItemView
from .operations import Operation
from .representations import iso


def webhook_detail(webhook: Webhook) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "queue": webhook.queue.name,
        "url": webhook.url,
        "events": list(webhook.events),
        "enabled": webhook.enabled,
        "consecutive_failures": webhook.consecutive_failures,
        "failing_since": iso(webhook.failing_since),
        "rotation_overlap_until": iso(webhook.previous_secret_until),
        "disabled_at": iso(webhook.disabled_at),
        "last_delivery_at": iso(webhook.last_delivery_at),
        "last_status": webhook.last_status,
        "last_error": webhook.last_error,
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
    }


class _WebhookView(NamedItemView):
    item = "webhook"


_one: dict[Any, Any] = {200: serializers.WebhookOut, **problems(404)}


@extend_schema_view(
    get=operation_schema(
        Operation.LIST_WEBHOOKS,
        responses={200: serializers.WebhookListOut, **problems()},
        description="The queue's webhooks by name (none for a queue not yet made), without "
        "their secrets. Needs `admin`.",
    )
)
class WebhookListApi(_WebhookView):
    operations = {"get": Operation.LIST_WEBHOOKS}

    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        webhooks = reads.webhooks_read(queue_name=name, actor=self.actor())
        return Response({"webhooks": [webhook_detail(w) for w in webhooks]})


@extend_schema_view(
    put=operation_schema(
        Operation.PUT_WEBHOOK,
        request=serializers.WebhookIn,
        responses={
            201: serializers.WebhookCreatedOut,
            200: serializers.WebhookOut,
            **problems(415),
        },
        description="Create (201) or replace (200) a webhook: each job event of the queue "
        "whose kind is in `events` is POSTed to `url`, signed (`X-Flashq-Signature`). "
        "A create answers the signing `secret`, the only time it is shown; a replace keeps "
        "it. A PUT also enables a webhook that was disabled after too many failed "
        "deliveries, and clears its failure count. A URL that is not https, holds "
        "credentials, uses a port under 1024 (but 443) or names a loopback, private, "
        "link-local or metadata address, an unknown or repeated event kind, no events, "
        "or an unknown field is a 400 naming it; nothing is changed. Creates the queue if "
        "needed. Needs `admin`.",
    ),
    get=operation_schema(
        Operation.GET_WEBHOOK,
        responses=_one,
        description="Read a webhook, with its last delivery's time and status (never its "
        "secret). Needs `admin`.",
    ),
    delete=operation_schema(
        Operation.DELETE_WEBHOOK,
        request=serializers.ReasonIn,
        responses={204: None, **problems(404, 415)},
        description="Delete a webhook; its deliveries not yet sent are dropped. Optional "
        "`reason`, kept in the audit event. Needs `admin`.",
    ),
)
class WebhookApi(_WebhookView):
    operations = {
        "put": Operation.PUT_WEBHOOK,
        "get": Operation.GET_WEBHOOK,
        "delete": Operation.DELETE_WEBHOOK,
    }

    def put(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        webhook_name = self.item_name()
        self.authorize(queue_name)
        body = serializers.WebhookIn(data=request.data)
        body.is_valid(raise_exception=True)
        webhook, secret = services.webhook_save(
            queue_name=queue_name,
            name=webhook_name,
            url=body.validated_data["url"],
            events=body.validated_data["events"],
            actor=self.actor(),
        )
        if secret is None:
            return Response(webhook_detail(webhook), status=200)
        return Response({**webhook_detail(webhook), "secret": secret}, status=201)

    def get(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        webhook_name = self.item_name()
        self.authorize(queue_name)
        webhook = reads.webhook_read(queue_name=queue_name, name=webhook_name, actor=self.actor())
        return Response(webhook_detail(webhook))

    def delete(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        webhook_name = self.item_name()
        self.authorize(queue_name)
        services.webhook_delete(
            queue_name=queue_name, name=webhook_name, actor=self.actor(), reason=self.reason()
        )
        return Response(status=204)


@extend_schema_view(
    post=operation_schema(
        Operation.ROTATE_WEBHOOK_SECRET,
        request=serializers.ReasonIn,
        responses={200: serializers.WebhookCreatedOut, **problems(404, 415)},
        description="Replace the webhook's signing secret and answer the new one, the only "
        "time it is shown. Deliveries sent from now on (retries included) are signed with "
        "it. Optional `reason`. Needs `admin`.",
    )
)
class WebhookRotateSecretApi(_WebhookView):
    operations = {"post": Operation.ROTATE_WEBHOOK_SECRET}

    def post(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        webhook_name = self.item_name()
        self.authorize(queue_name)
        webhook, secret = services.webhook_rotate_secret(
            queue_name=queue_name, name=webhook_name, actor=self.actor(), reason=self.reason()
        )
        return Response({**webhook_detail(webhook), "secret": secret})

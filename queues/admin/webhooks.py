"""Webhooks in the admin: listed per queue with their last delivery; added and changed
through a form that asks for a reason and calls the webhook service (which validates
the URL as the API does); the secret is shown once, on the page after the add or after
the rotate-secret action, and never again (not a field, not a message, not cached).
Deleting is an action that asks for a reason. Rights follow the queue: ``view_queue``
to see, ``change_queue`` to add, change, rotate and delete (globally
``queues.change_queue``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse

from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.staff import (
    DeletedByActionAdmin,
    ServiceModelAdmin,
    report_outcome,
    staff_actor,
)
from kernel import safehttp
from kernel.limits import INTERNAL_QUEUE_PREFIX
from kernel.problems import FlashqError

from .. import services, staffaccess
from ..eventmodels import EventKind
from ..models import Webhook
from ..validators import validate_no_card_number
from .confirm import ReasonForm, confirmation_page

RIGHT = "change_queue"
KINDS = [(kind.value, kind.label) for kind in EventKind if kind is not EventKind.RESET]
SHOWN_ONCE = "admin/queues/webhook/secret_once.html"
STATUS = [
    "enabled",
    "consecutive_failures",
    "failing_since",
    "previous_secret_until",
    "disabled_at",
    "last_delivery_at",
    "last_status",
    "last_error",
    "created_at",
    "updated_at",
]


class WebhookForm(forms.ModelForm):
    events = forms.MultipleChoiceField(choices=KINDS, widget=forms.CheckboxSelectMultiple)
    reason = forms.CharField(
        max_length=500,
        validators=[validate_no_card_number],
        help_text="Why (kept in the audit trail), e.g. a ticket reference.",
    )

    class Meta:
        model = Webhook
        fields = ["queue", "name", "url", "events"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        problem = safehttp.url_problem(url, safehttp.Allowed.parse(settings.WEBHOOK_ALLOWED_HOSTS))
        if problem is not None:
            raise forms.ValidationError(f"The URL {problem}.")
        return url


@admin.register(Webhook)
class WebhookAdmin(DeletedByActionAdmin, AuditHistoryAdmin, ServiceModelAdmin):
    delete_action_label = "Delete the selected webhooks"
    form = WebhookForm
    list_display = ["name", "queue", "url", "enabled", "last_delivery_at", "last_status"]
    list_filter = ["enabled", ("queue", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["queue"]
    search_fields = ["name", "queue__name", "url"]
    actions = ["rotate_secrets", "delete_webhooks"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        editing = ["queue", "name", "url", "events", "reason"]
        return editing if obj is None else [*editing, *STATUS]

    def audit_history(self, obj: Webhook) -> AuditHistory:
        return AuditHistory.matching(
            queue=obj.queue.name, action__startswith="webhook.", details__name=obj.name
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        if not self.has_change_permission(request, obj):
            return ["queue", "name", "url", "events", *STATUS]
        return ["queue", "name", *STATUS]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Webhook]:
        webhooks = super().get_queryset(request).select_related("queue")
        visible = staffaccess.queues_for(request.user, "view_queue")
        return webhooks.filter(queue__in=visible.values("pk"))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "queue":
            kwargs["queryset"] = (
                staffaccess.queues_for(request.user, RIGHT)
                .exclude(name__startswith=INTERNAL_QUEUE_PREFIX)
                .order_by("name")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return staffaccess.may_on_some(request.user, "view_queue")
        return staffaccess.may_on(request.user, "view_queue", obj.queue)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return staffaccess.may_on_some(request.user, RIGHT)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return staffaccess.may_on_some(request.user, RIGHT)
        return staffaccess.may_on(request.user, RIGHT, obj.queue)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staffaccess.may_on_some(request.user, RIGHT)

    def save_model(self, request: HttpRequest, obj: Webhook, form: ModelForm, change: bool) -> None:
        data = form.cleaned_data
        queue, name = (obj.queue, obj.name) if change else (data["queue"], data["name"])
        webhook, secret = services.webhook_save(
            queue_name=queue.name,
            name=name,
            url=data["url"],
            events=list(data["events"]),
            actor=staff_actor(request),
            reason=data["reason"],
        )
        obj.pk = webhook.pk
        if secret is not None:
            request._flashq_secrets = [(f"{queue.name}/{name}", secret)]  # type: ignore[attr-defined]

    def _show_once(self, request: HttpRequest, secrets: list[tuple[str, str]]) -> Any:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Copy the signing secret now: it is not shown again",
            "secrets": secrets,
        }
        response = TemplateResponse(request, SHOWN_ONCE, context)
        response["Cache-Control"] = "no-store"
        return response

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        secrets = getattr(request, "_flashq_secrets", None)
        if secrets is None:  # pragma: no cover (save_model always sets it on an add)
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(request, secrets)

    # -- actions: confirm with a reason, then call the service per webhook -----------------

    def _confirmed(
        self,
        request: HttpRequest,
        queryset: QuerySet[Webhook],
        *,
        verb: str,
        act: Callable[[Webhook, str], str | None],
    ) -> Any:
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        chosen = list(queryset.select_related("queue").order_by("queue__name", "name"))
        if "confirm" not in request.POST or not form.is_valid():
            return confirmation_page(
                self,
                request,
                question=f"{verb.capitalize()} {len(chosen)} webhook(s)?",
                verb=verb,
                items=(f"{w.queue.name}/{w.name}" for w in chosen),
                count=len(chosen),
                form=form,
            )
        shown, refused, done = [], [], 0
        for webhook in chosen:
            label = f"{webhook.queue.name}/{webhook.name}"
            if not staffaccess.may_on(request.user, RIGHT, webhook.queue):
                refused.append(f"{label}: you may not {verb} webhooks of this queue")
                continue
            try:
                secret = act(webhook, form.cleaned_data["reason"])
            except FlashqError as exc:
                refused.append(f"{label}: {exc.detail}")
                continue
            done += 1
            if secret is not None:
                shown.append((label, secret))
        report_outcome(self, request, verb=verb, noun="webhook", done=done, refused=refused)
        if shown:
            return self._show_once(request, shown)
        return None

    @admin.action(permissions=["change"], description="Rotate the selected webhooks' secrets")
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> Any:
        actor = staff_actor(request)
        return self._confirmed(
            request,
            queryset,
            verb="rotate the secret of",
            act=lambda w, why: services.webhook_rotate_secret(
                queue_name=w.queue.name, name=w.name, actor=actor, reason=why
            )[1],
        )

    @admin.action(permissions=["delete"], description="Delete the selected webhooks")
    def delete_webhooks(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> Any:
        actor = staff_actor(request)

        def delete(webhook: Webhook, why: str) -> None:
            services.webhook_delete(
                queue_name=webhook.queue.name, name=webhook.name, actor=actor, reason=why
            )

        return self._confirmed(request, queryset, verb="delete", act=delete)

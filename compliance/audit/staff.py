"""Staff users in the admin: who they are as audit actors, and the base of every admin
page that changes something. Such pages change rows only through services (which
write the audit event with the staff user as actor), so Django's own ``LogEntry`` is
not written: it would be a second, editable record beside the audit trail."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest

from .actors import request_actor
from .record import Actor, ActorKind


def staff_actor(request: HttpRequest) -> Actor:
    user = request.user
    return request_actor(request, kind=ActorKind.USER, name=user.get_username(), user_id=user.pk)


class OptionalJSONField(forms.JSONField):
    """A JSON form field that shows an empty value (None) as an empty box, not the
    word ``null``; an empty box still saves None (forms.JSONField's own reading)."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class ServiceModelAdmin(admin.ModelAdmin):
    """An admin whose saves and actions go through services. Its JSON fields show an
    empty value as an empty box."""

    formfield_overrides = {models.JSONField: {"form_class": OptionalJSONField}}

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        return ""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        return None


class DeletedByActionAdmin(admin.ModelAdmin):
    """Rows are deleted only by the admin's own delete action, which asks a reason and
    calls the service: no bulk ``delete_selected``, no delete page, no Delete link."""

    #: The label of the action that deletes, named in the refusal of the delete page.
    delete_action_label = ""

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        raise PermissionDenied(f"Delete with the {self.delete_action_label!r} action.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, extra)


def report_outcome(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    verb: str,
    noun: str,
    done: int,
    refused: list[str],
) -> None:
    """What a bulk action did, in the admin's messages: a success only when it did every
    selected row; otherwise how many of them, as a warning (some) or an error (none),
    followed by each refusal (the first 20)."""
    if not refused:
        model_admin.message_user(
            request, f"{verb.capitalize()}: {done} {noun}(s).", messages.SUCCESS
        )
    else:
        level = messages.WARNING if done else messages.ERROR
        summary = f"{verb.capitalize()}: {done} of {done + len(refused)} {noun}(s); refused:"
        model_admin.message_user(request, summary, level)
    for line in refused[:20]:
        model_admin.message_user(request, line, messages.WARNING)

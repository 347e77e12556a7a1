"""Tokens in the admin. They are created with ``manage.py create_token`` (the secret is
shown once); here they are inspected, renamed, given an expiry and rules, and revoked.
Every change goes through security.services and is audited with the staff user as
actor. Revocation is an action, never a field: a revoked token cannot come back."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from compliance.staff import ServiceModelAdmin, staff_actor

from .access import split_verbs
from .models import ApiToken, QueuePermission
from .services import RuleSpec, token_create, token_revoke, token_rotate, token_update

ROTATION_OVERLAP_HOURS = 24


class QueuePermissionInline(admin.TabularInline):
    model = QueuePermission
    extra = 0


def _rules(formset: BaseInlineFormSet) -> list[RuleSpec]:
    """The rules a validated permissions formset asks for: kept and new rows, not the
    ones ticked for deletion nor untouched blank extras."""
    rules = []
    for form in formset.forms:
        data, stored = form.cleaned_data, form.instance
        if data.get("DELETE") or (stored.pk is None and not form.has_changed()):
            continue
        rules.append(
            RuleSpec(
                pattern=data.get("pattern", stored.pattern),
                verbs=split_verbs(data.get("verbs", stored.verbs)),
                allow=data.get("effect", stored.effect) == QueuePermission.Effect.ALLOW,
            )
        )
    return rules


@admin.register(ApiToken)
class ApiTokenAdmin(ServiceModelAdmin):
    list_display = ["name", "public_id", "created_at", "expires_at", "is_revoked", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "public_id"]
    fields = [
        "name",
        "expires_at",
        "allowed_cidrs",
        "rate_limit",
        "public_id",
        "created_at",
        "revoked_at",
        "last_used_at",
        "last_used_ip",
    ]
    readonly_fields = ["public_id", "created_at", "revoked_at", "last_used_at", "last_used_ip"]
    inlines = [QueuePermissionInline]
    actions = ["revoke_tokens", "rotate_tokens"]
    # A new token's secret is shown once, on the page after saving: never stored, never
    # put in a message (messages live in the session), never cached.
    shown_once_template = "admin/security/apitoken/secret_once.html"

    @admin.display(boolean=True, description="revoked", ordering="revoked_at")
    def is_revoked(self, token: ApiToken) -> bool:
        return token.revoked

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("security.add_apitoken"))

    def _show_once(self, request: HttpRequest, created: list[tuple[str, str]]) -> Any:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Copy the token now: it is not shown again",
            "created": created,
        }
        response = TemplateResponse(request, self.shown_once_template, context)
        response["Cache-Control"] = "no-store"
        return response

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        created = getattr(request, "_flashq_created", None)
        if created is None:  # pragma: no cover (save_related always sets it)
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(request, [created])

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        """Saved with its rules in save_related, through one service call."""

    def save_related(
        self,
        request: HttpRequest,
        form: ModelForm,
        formsets: list[BaseInlineFormSet],
        change: bool,
    ) -> None:
        if not change:
            expires_at = form.cleaned_data["expires_at"]
            days = max(1, math.ceil((expires_at - timezone.now()).total_seconds() / 86400))
            token, raw = token_create(
                name=form.cleaned_data["name"],
                rules=_rules(formsets[0]) if formsets else [],
                expires_in_days=days,
                allowed_cidrs=form.cleaned_data.get("allowed_cidrs") or (),
                rate_limit=form.cleaned_data.get("rate_limit"),
                actor=staff_actor(request),
            )
            form.instance = token
            request._flashq_created = (token.name, raw)  # type: ignore[attr-defined]
            return
        # Rules are edited by those who may change them; anyone else (no formset, or
        # a read-only one) leaves them as they are.
        may_edit_rules = formsets and request.user.has_perm("security.change_queuepermission")
        token_update(
            token_id=form.instance.pk,
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
            rules=_rules(formsets[0]) if may_edit_rules else None,
            allowed_cidrs=form.cleaned_data.get("allowed_cidrs"),
            rate_limit=form.cleaned_data.get("rate_limit"),
            actor=staff_actor(request),
        )

    @admin.action(permissions=["change"], description="Revoke the selected tokens (final)")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        actor = staff_actor(request)
        ids = list(queryset.order_by("name").values_list("pk", flat=True))
        for token_id in ids:
            token_revoke(token_id=token_id, actor=actor)
        self.message_user(request, f"Revoked {len(ids)} token(s).", messages.SUCCESS)

    @admin.action(
        permissions=["change"],
        description="Rotate the selected tokens (new secret; the old one works 24 h more)",
    )
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> Any:
        actor = staff_actor(request)
        created = []
        for name in list(queryset.filter(revoked_at__isnull=True).values_list("name", flat=True)):
            token, raw = token_rotate(name=name, overlap_hours=ROTATION_OVERLAP_HOURS, actor=actor)
            created.append((token.name, raw))
        if not created:
            self.message_user(
                request, "No token rotated (revoked tokens cannot be).", messages.WARNING
            )
            return None
        return self._show_once(request, created)

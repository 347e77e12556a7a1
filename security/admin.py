"""Tokens in the admin: created (with ``security.add_apitoken``), inspected, renamed,
given an expiry, allowed networks, a rate limit and rules (the rules only by those who
may change ``security.queuepermission``), rotated and revoked, never deleted. A new
secret, created or rotated, is shown once, on the page after the action, as ``manage.py
create_token`` prints it once; a rotated token's old secret works 24 hours more at most.
Every change goes through security.services and is audited with the staff user as
actor. Revocation is an action, never a field: it asks for a reason on a confirmation
page, takes the token's whole family by default (a rotated twin would otherwise keep
working), and a revoked token cannot come back."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.staff import ServiceModelAdmin, report_outcome, staff_actor

from .access import split_verbs
from .models import ApiToken, QueuePermission
from .selectors import token_state
from .services import RuleSpec, token_create, token_revoke, token_rotate, token_update

ROTATION_OVERLAP_HOURS = 24


class RevokeForm(forms.Form):
    reason = forms.CharField(
        max_length=500, help_text="Why (kept in the audit trail), e.g. a ticket reference."
    )
    only_this = forms.BooleanField(
        required=False,
        label="Only the selected tokens",
        help_text="Leave the other tokens of their families (rotated twins) working.",
    )


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


# The add form: what a new token is made with (its rules below, in the inline).
ADD_FIELDS = ["name", "expires_at", "allowed_cidrs", "rate_limit"]


@admin.register(ApiToken)
class ApiTokenAdmin(AuditHistoryAdmin, ServiceModelAdmin):
    list_display = ["name", "public_id", "state", "created_at", "expires_at", "last_used_at"]
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

    def audit_history(self, obj: ApiToken) -> AuditHistory:
        return AuditHistory.matching(action__startswith="token.", details__token_name=obj.name)

    @admin.display(description="state", ordering="revoked_at")
    def state(self, token: ApiToken) -> str:
        return token_state(token, now=timezone.now())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("security.add_apitoken"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A token not yet made has no id, creation time, revocation or use to show.
        return self.fields if obj is not None else ADD_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "expires_at" and field is not None:
            field.help_text = (
                f"Every token expires: a new one after {settings.TOKEN_DEFAULT_LIFETIME_DAYS} "
                f"days unless you change it, at most {settings.TOKEN_MAX_LIFETIME_DAYS} days "
                "after it was created. Times are UTC."
            )
        return field

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new token expires after TOKEN_DEFAULT_LIFETIME_DAYS unless told otherwise."""
        initial: dict[str, Any] = {**super().get_changeform_initial_data(request)}
        lifetime = timedelta(days=settings.TOKEN_DEFAULT_LIFETIME_DAYS)
        initial.setdefault("expires_at", (timezone.now() + lifetime).replace(microsecond=0))
        return initial

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

    @admin.action(
        permissions=["change"], description="Revoke the selected tokens and their families (final)"
    )
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> Any:
        """A confirmation page with the tokens (and their families) and a reason; once
        confirmed, one service call per selected token."""
        selected = list(queryset.order_by("name"))
        form = RevokeForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            actor, whole_family = staff_actor(request), not form.cleaned_data["only_this"]
            revoked: set[int] = set()
            for token in selected:
                if token.pk in revoked:  # already taken with an earlier one's family
                    continue
                members = token_revoke(
                    token_id=token.pk,
                    family=whole_family,
                    reason=form.cleaned_data["reason"],
                    actor=actor,
                )
                revoked.update(member.pk for member in members)
            self.message_user(request, f"Revoked {len(revoked)} token(s).", messages.SUCCESS)
            return None
        families = {token.family or token.public_id for token in selected}
        twins = ApiToken.objects.filter(
            Q(family__in=families) & ~Q(pk__in=[token.pk for token in selected])
        ).order_by("name")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Revoke {len(selected)} token(s)?",
            "opts": self.model._meta,
            "tokens": selected,
            "twins": list(twins),
            "form": form,
            "action": request.POST.get("action", ""),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/security/apitoken/confirm_revoke.html", context)

    @admin.action(
        permissions=["change"],
        description="Rotate the selected tokens (new secret; the old one works 24 h more)",
    )
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> Any:
        actor = staff_actor(request)
        created, refused = [], []
        for name, revoked_at in queryset.order_by("name").values_list("name", "revoked_at"):
            if revoked_at is not None:
                refused.append(f"{name}: a revoked token cannot be rotated")
                continue
            try:
                token, raw = token_rotate(
                    name=name, overlap_hours=ROTATION_OVERLAP_HOURS, actor=actor
                )
            except ValidationError as why:  # expired: the service says why
                refused.append(f"{name}: {' '.join(why.messages)}")
                continue
            created.append((token.name, raw))
        done = len(created)
        report_outcome(self, request, verb="rotate", noun="token", done=done, refused=refused)
        return self._show_once(request, created) if created else None

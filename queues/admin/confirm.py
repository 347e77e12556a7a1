"""The page an admin action on queues or jobs shows before it acts: what it will act
on, and a field for the reason the audit trail keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from ..validators import validate_no_card_number


class ReasonForm(forms.Form):
    # The trail is never erased: no card number in it.
    reason = forms.CharField(
        max_length=500,
        validators=[validate_no_card_number],
        help_text="Why (kept in the audit trail), e.g. a ticket reference.",
    )


def confirmation_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    question: str,
    verb: str,
    items: Iterable[str],
    count: int,
    form: ReasonForm,
    hidden: Mapping[str, str] | None = None,
    note: str = "",
) -> TemplateResponse:
    """The page an action shows before it acts: what it will act on, and a reason.
    ``hidden``: more fields its form posts back (what a selection across pages was);
    ``note``: what the page says of the selection."""
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": question,
        "opts": opts,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "items": list(items)[:100],
        "count": count,
        "verb": verb,
        "form": form,
        "action": request.POST.get("action", ""),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "hidden": dict(hidden or {}),
        "note": note,
    }
    return TemplateResponse(request, "admin/queues/confirm_action.html", context)

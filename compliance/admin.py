from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from compliance.audit.history import AuditHistory, AuditHistoryAdmin
from compliance.audit.models import AuditCheckpoint, AuditEvent
from compliance.audit.selectors import audit_events_naming_job
from compliance.audit.services import EXPORT_FORMATS, ExportFilter, audit_export
from compliance.audit.staff import ServiceModelAdmin, report_outcome, staff_actor
from compliance.audit.verification import verify_step

from . import auditlist, retention
from .models import ErasureRequest, RetentionPolicy

# The audit list's query string, carried by its "Export…" link (as Django's admin
# carries a list's filters to a change page).
LIST_FILTERS = "_changelist_filters"


class ExportForm(forms.Form):
    since = forms.DateTimeField(help_text="from (inclusive), e.g. 2026-11-01 00:00")
    until = forms.DateTimeField(help_text="to (exclusive)")
    queue = forms.CharField(required=False, max_length=128)
    actor = forms.CharField(required=False, max_length=150, help_text="e.g. token:billing")
    format = forms.ChoiceField(choices=[(f, f) for f in EXPORT_FORMATS])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["until"] <= data["since"]:
            raise forms.ValidationError("'until' must be after 'since'.")
        return data


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: nobody adds, edits or deletes them here, superusers
    included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only: nobody edits or deletes it here. Anyone who may
    view it can export a time range (an audited read) and verify the hash chain. The
    search box finds a request id, queue, actor, client request id, or a job id among
    an event's job ids; the export applies the list's current filters and search."""

    list_display = [
        "created_at",
        "action",
        "outcome",
        "status",
        "queue",
        "actor",
        "client_ip",
        "seq",
    ]
    list_filter = auditlist.FILTERS
    search_fields = ["=request_id", "=queue", "=actor", "=client_request_id"]
    show_full_result_count = False
    change_list_template = "admin/compliance/auditevent/change_list.html"
    actions = None

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("export/", view(self.export_view), name="compliance_auditevent_export"),
            path("verify/", view(self.verify_view), name="compliance_auditevent_verify"),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            job_id = str(uuid.UUID(search_term.strip()))
        except ValueError:
            return found, may_have_duplicates
        return found | queryset.filter(audit_events_naming_job(job_id=job_id)), may_have_duplicates

    def _listed(self, request: HttpRequest, list_query: str) -> QuerySet[AuditEvent]:
        """The events the audit list shows for ``list_query`` (its filters, date drill
        down and search), through the list's own code so the two cannot differ."""
        listing = copy.copy(request)
        listing.GET = QueryDict(list_query)
        changelist = self.get_changelist_instance(listing)
        return changelist.get_queryset(listing)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        list_query = request.GET.get(LIST_FILTERS, "")
        list_filters = {
            name: str(value) for name, value in QueryDict(list_query).items() if name != SEARCH_VAR
        }
        if QueryDict(list_query).get(SEARCH_VAR):
            list_filters["search"] = "yes"
        form = ExportForm(request.GET if set(request.GET) - {LIST_FILTERS} else None)
        if not form.is_bound or not form.is_valid():
            context = {
                **self._context(request, "Export audit events"),
                "form": form,
                "list_query": list_query,
                "list_filters": list_filters,
            }
            return TemplateResponse(request, "admin/compliance/auditevent/export.html", context)
        data = form.cleaned_data
        try:
            listed = self._listed(request, list_query) if list_query else None
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("The audit list's filters are not valid.")
        selection = ExportFilter(
            since=data["since"],
            until=data["until"],
            queue=data["queue"],
            actor=data["actor"],
            list_filters=list_filters,
            within=listed,
        )
        fmt = data["format"]
        response = HttpResponse(
            content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl"
        )
        stamp = f"{data['since']:%Y%m%d}-{data['until']:%Y%m%d}"
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
        audit_export(selection=selection, fmt=fmt, out=response, actor=staff_actor(request))
        return response

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # In steps, so that no request walks a long chain: each step's page goes on to
        # the next by itself (a meta refresh) until the chain's end or a break.
        try:
            after = int(request.GET["after"]) if "after" in request.GET else None
            before = max(int(request.GET.get("checked", 0)), 0)
        except ValueError:
            return HttpResponseBadRequest("after and checked are sequence numbers.")
        verdict, next_after = verify_step(after=after)
        verdict = dataclasses.replace(verdict, checked=before + verdict.checked)
        context = {
            **self._context(request, "Audit chain verification"),
            "verdict": verdict,
            "next_after": next_after,
        }
        return TemplateResponse(request, "admin/compliance/auditevent/verify.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        export_query = QueryDict(mutable=True)
        export_query[LIST_FILTERS] = request.GET.urlencode()
        head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
        unsealed = AuditEvent.objects.filter(seq__isnull=True)
        extra = {
            "chain_head": head,
            "unsealed": unsealed.count(),
            "checkpoint": AuditCheckpoint.objects.order_by("-seq").first(),
            "export_query": export_query,
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "events_removed", "reason"]


# Execute needs a dry run of the same subject and mode, this recent, in the session.
ERASURE_DRY_RUN_KEY = "flashq.erasure.dryRun"
ERASURE_DRY_RUN_MINUTES = 15
ERASURE_CONFIRMATION = "ERASE"


class ErasureForm(forms.Form):
    subject = forms.CharField(max_length=255, help_text="The data subject's identifier.")
    mode = forms.ChoiceField(choices=[("redact", "redact"), ("delete", "delete")])
    reason = forms.CharField(
        max_length=500, required=False, help_text="Required to execute, e.g. a DSR reference."
    )
    confirmation = forms.CharField(
        max_length=16,
        required=False,
        help_text=f"To execute after a dry run, type {ERASURE_CONFIRMATION}.",
    )


def _dry_run_digest(subject: str, mode: str) -> str:
    """What the session keeps of a dry run: a keyed digest, never the subject."""
    return salted_hmac(
        "flashq.erasure.dryRun", f"{mode}\x00{subject}", algorithm="sha256"
    ).hexdigest()


def _execute_refusal(request: HttpRequest, subject: str, mode: str, confirmation: str) -> str:
    """Why executing is refused now ("" when it may go ahead)."""
    dry_run = request.session.get(ERASURE_DRY_RUN_KEY) or {}
    fresh = time.time() - float(dry_run.get("at", 0)) < ERASURE_DRY_RUN_MINUTES * 60
    same = constant_time_compare(str(dry_run.get("digest", "")), _dry_run_digest(subject, mode))
    if not (fresh and same):
        return (
            "Execute is refused: run a dry run of this subject and mode first (in this "
            f"session, within {ERASURE_DRY_RUN_MINUTES} minutes) and read what it finds. "
            "Nothing was changed."
        )
    if confirmation.strip() != ERASURE_CONFIRMATION:
        return (
            f"Execute is refused: type {ERASURE_CONFIRMATION} in the confirmation field. "
            "Nothing was changed."
        )
    return ""


@admin.register(ErasureRequest)
class ErasureRequestAdmin(ReadOnlyAdmin):
    """Receipts of executed GDPR erasures (no personal data: the subject is a keyed
    pseudonym). Holders of ``compliance.erase_subject`` run new ones here: a dry run
    first, then the same subject and mode executed with a reason and the typed
    confirmation, through the same service as ``manage.py gdpr_erase``."""

    list_display = ["created_at", "mode", "total", "operator", "reason", "subject_pseudonym"]
    list_filter = ["mode", "operator"]
    change_list_template = "admin/compliance/erasurerequest/change_list.html"

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.erase_view)
        lookup = self.admin_site.admin_view(self.erasure_subject_lookup)
        return [
            path("erase/", view, name="compliance_erasure_new"),
            path("by-subject/", lookup, name="compliance_erasure_by_subject"),
            *super().get_urls(),
        ]

    def erasure_subject_lookup(self, request: HttpRequest) -> HttpResponse:
        """Find the receipts of a subject: the subject is posted (never in a URL, so no
        access log or browser history keeps it), turned into its pseudonym with the key
        the receipts were written with, and the list shown filtered by that pseudonym.
        It changes nothing, so view-only staff (auditors) may post it."""
        from security.masking import pseudonym

        if not self.has_view_permission(request) or request.method != "POST":
            raise PermissionDenied
        listing = reverse("admin:compliance_erasurerequest_changelist")
        subject = request.POST.get("subject", "")
        if not subject:
            return HttpResponseRedirect(listing)
        query = QueryDict(mutable=True)
        query["subject_pseudonym"] = pseudonym(subject)
        return HttpResponseRedirect(f"{listing}?{query.urlencode()}")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {"may_erase": request.user.has_perm("compliance.erase_subject")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def erase_view(self, request: HttpRequest) -> HttpResponse:
        from compliance.erasure import ErasureRefused, subject_erase

        if not request.user.has_perm("compliance.erase_subject"):
            raise PermissionDenied
        form = ErasureForm(request.POST or None)
        outcome, error = None, ""
        if request.method == "POST" and form.is_valid():
            subject, mode = form.cleaned_data["subject"], form.cleaned_data["mode"]
            execute = "execute" in request.POST
            if execute:
                error = _execute_refusal(request, subject, mode, form.cleaned_data["confirmation"])
            if not error:
                try:
                    outcome = subject_erase(
                        subject=subject,
                        mode=mode,
                        reason=form.cleaned_data["reason"],
                        execute=execute,
                        actor=staff_actor(request),
                    )
                except ErasureRefused as exc:
                    error = str(exc)
            if outcome is not None and execute:
                request.session.pop(ERASURE_DRY_RUN_KEY, None)  # the next one starts afresh
            elif outcome is not None:
                request.session[ERASURE_DRY_RUN_KEY] = {
                    "digest": _dry_run_digest(subject, mode),
                    "at": time.time(),
                }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "GDPR erasure",
            "form": form,
            "outcome": outcome,
            "error": error,
            "confirmation_word": ERASURE_CONFIRMATION,
            "dry_run_minutes": ERASURE_DRY_RUN_MINUTES,
        }
        response = TemplateResponse(
            request,
            "admin/compliance/erasurerequest/erase.html",
            context,
            status=400 if error else 200,
        )
        response["Cache-Control"] = "no-store"
        return response


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(AuditHistoryAdmin, ServiceModelAdmin):
    """Saves and deletes go through compliance.retention (audited, staff user as actor)."""

    list_display = ["target", "queue_pattern", "max_age_days"]
    list_filter = ["target"]
    actions = ["delete_policies"]

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass the service
        return actions

    def audit_history(self, obj: RetentionPolicy) -> AuditHistory:
        # The policy's id is a number in the events' details: no list filter reads it.
        return AuditHistory(
            where=Q(action__startswith="retention.policy", details__policy_id=obj.pk)
        )

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: ModelForm, change: bool
    ) -> None:
        retention.retention_policy_save(policy=obj, actor=staff_actor(request))

    def delete_model(self, request: HttpRequest, obj: RetentionPolicy) -> None:
        retention.retention_policy_delete(policy_id=obj.pk, actor=staff_actor(request))

    @admin.action(permissions=["delete"], description="Delete the selected retention policies")
    def delete_policies(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        actor = staff_actor(request)
        done, refused = 0, []
        for pk, label in [(policy.pk, str(policy)) for policy in queryset.order_by("pk")]:
            try:
                retention.retention_policy_delete(policy_id=pk, actor=actor)
                done += 1
            except RetentionPolicy.DoesNotExist:  # deleted meanwhile, by someone else
                refused.append(f"{label}: already deleted")
        report_outcome(
            self, request, verb="delete", noun="retention policy", done=done, refused=refused
        )

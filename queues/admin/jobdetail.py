"""A job's page as a staff user reads it: its payloads and the worker's free texts
masked for every role (queues.staffreads), the values in clear once, on request with a
reason, for a user with the reveal right on its queue (the reveal page, audited), its
relations (parent, children, dependencies, dependents: queues.relations) and the audit
events naming it."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from compliance.audit.staff import staff_actor

from .. import selectors, staffaccess, staffreads
from ..models import Job
from ..relations import Relation, job_relations


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def json_block(name: str, value: Any) -> str:
    """``value`` (already masked for whoever reads it) as indented JSON in a ``<pre>``
    (escaped), with a Copy button that copies that text as shown (queues/copy.js)."""
    return format_html(
        '<pre class="json" id="json-{}">{}</pre>'
        '<button type="button" class="button copy-json" data-copy="json-{}">Copy</button>',
        name,
        _pretty(value),
        name,
    )


class RevealForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        help_text="Why you need the values in clear (kept in the audit trail), e.g. a ticket.",
    )


RELATION_TITLES = {
    Relation.PARENT: "parent",
    Relation.CHILDREN: "children",
    Relation.DEPENDENCIES: "depends on",
    Relation.DEPENDENTS: "depended on by",
}

# The fields of a job's page, all read-only: the masked_* ones and audit_trail are
# JobDetailAdmin's.
JOB_DETAIL = [
    "id",
    "queue",
    "state",
    "priority",
    "attempts",
    "max_attempts",
    "key",
    "subject",
    "tags",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "progress",
    "masked_progress_message",
    "masked_data",
    "masked_result",
    "error_code",
    "last_error",
    "error_history",
    "audit_trail",
]


class JobDetailAdmin(admin.ModelAdmin):
    """What JobAdmin shows of one job: the masked columns, the reveal page (its own URL,
    ``admin:queues_job_reveal``) and the audit events naming the job."""

    def get_urls(self) -> list[Any]:
        reveal = self.admin_site.admin_view(self.reveal_view)
        # Before Django's own: its "<object_id>/" catch-all would take this path.
        return [
            path("<path:object_id>/reveal/", reveal, name="queues_job_reveal"),
            *super().get_urls(),
        ]

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form asking for a reason. POST: the values in clear, once. The form
        carries a single-use nonce kept in the session, so reloading the revealed page
        (a re-POST) shows nothing more: it goes back to the masked job page."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such job.")
        actor = staff_actor(request)
        if not staffaccess.may_on(request.user, "reveal_queue", job.queue):
            staffreads.job_reveal_refusal(job=job, actor=actor)
            raise PermissionDenied("You may not reveal this queue's jobs.")
        once_key = f"flashq.reveal.{job.pk}"
        form = RevealForm(request.POST if request.method == "POST" else None)
        if request.method == "POST":
            issued = request.session.pop(once_key, "")
            if not issued or not constant_time_compare(issued, request.POST.get("once", "")):
                self.message_user(
                    request,
                    "Those values were shown once already; reveal again with a reason.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(reverse("admin:queues_job_change", args=[job.pk]))
            if form.is_valid():
                event_id = staffreads.job_reveal_record(
                    job=job, reason=form.cleaned_data["reason"], actor=actor
                )
                reading = staffreads.job_reading(job=job, revealed=True)
                return self._reveal_page(request, job, reading=reading, event_id=event_id)
        once = secrets.token_urlsafe(24)
        request.session[once_key] = once
        status = 400 if request.method == "POST" else 200
        return self._reveal_page(request, job, form=form, once=once, status=status)

    def _reveal_page(
        self,
        request: HttpRequest,
        job: Job,
        *,
        reading: staffreads.JobReading | None = None,
        event_id: int | None = None,
        form: RevealForm | None = None,
        once: str = "",
        status: int = 200,
    ) -> HttpResponse:
        revealed = (
            {
                "data": _pretty(reading.data),
                "result": _pretty(reading.result),
                "error": reading.error,
                "errors": _pretty(reading.errors),
                "progress_message": reading.progress_message,
            }
            if reading is not None
            else None
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reveal job {job.pk}",
            "opts": self.model._meta,
            "job": job,
            "revealed": revealed,
            "event_id": event_id,
            "form": form,
            "once": once,
        }
        response = TemplateResponse(request, "admin/queues/job/reveal.html", context, status=status)
        # Values in clear must not outlive this response (admin_view adds this too).
        response["Cache-Control"] = "no-store, private"
        return response

    def relations_context(self, request: HttpRequest, job: Job) -> dict[str, Any]:
        """The page's relations block: per relation, the related jobs this user may see
        (link and state), how many more, and how many are in queues they cannot see;
        ``in_flow`` when the job has a parent or children."""
        relations = job_relations(job=job, visible=self.get_queryset(request))
        now = timezone.now()
        changelist = reverse("admin:queues_job_changelist")
        return {
            "relations": [
                {
                    "relation": str(related.relation),
                    "title": RELATION_TITLES[related.relation],
                    "jobs": [
                        (other, selectors.reported_state(other, now)) for other in related.jobs
                    ],
                    "more": related.more,
                    "hidden": related.hidden,
                    "list_url": f"{changelist}?"
                    + urlencode({"related": f"{related.relation}:{job.pk}"}),
                }
                for related in relations
            ],
            "in_flow": any(
                related.relation in (Relation.PARENT, Relation.CHILDREN) for related in relations
            ),
        }

    def _reading(self, job: Job) -> staffreads.JobReading:
        reading: staffreads.JobReading | None = getattr(job, "_admin_reading", None)
        if reading is None:
            reading = staffreads.job_reading(job=job, revealed=False)
            job._admin_reading = reading  # type: ignore[attr-defined]
        return reading

    @admin.display(description="data")
    def masked_data(self, job: Job) -> str:
        return json_block("data", self._reading(job).data)

    @admin.display(description="result")
    def masked_result(self, job: Job) -> str:
        return json_block("result", self._reading(job).result)

    @admin.display(description="error")
    def last_error(self, job: Job) -> str:
        return self._reading(job).error

    @admin.display(description="error history")
    def error_history(self, job: Job) -> str:
        return json_block("errors", self._reading(job).errors)

    @admin.display(description="progress message")
    def masked_progress_message(self, job: Job) -> str:
        return self._reading(job).progress_message

    @admin.display(description="audit events")
    def audit_trail(self, job: Job) -> str:
        events = selectors.job_audit_events(job=job)
        return (
            format_html_join(
                "\n",
                "<div>{} {} {} {} by {}</div>",
                (
                    (f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.action, e.outcome, e.status, e.actor)
                    for e in events
                ),
            )
            or "none"
        )

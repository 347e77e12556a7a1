"""The buttons on a job's page: retry (a failed, cancelled, expired or completed job),
cancel (an unfinished one), promote (a delayed one) and cancel flow (a job with a parent
or children). Each is shown only when it applies to the job's state and the user holds
its right on the job's queue; it asks for a reason on a confirmation page, calls the
same service as the API with the staff user as actor, and goes back to the job's page
with a message. Only a POST with the reason acts; whoever lacks the right gets 403, on
the confirmation page too, and nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from compliance.audit import Actor
from compliance.audit.staff import staff_actor
from kernel.problems import FlashqError

from .. import selectors, services, staffaccess
from ..models import UNFINISHED, Job, JobState
from ..relations import job_in_flow
from .confirm import ReasonForm


def root_queue(job: Job) -> Any:
    root = services.flow_root(job.id)
    return job.queue if root == job.id else selectors.job_get(job_id=root).queue


def may_cancel_flow(user: Any, job: Job) -> bool:
    """Cancelling a flow cancels its root, and through it every job under it: it takes
    the cancel right on the root's queue, whichever job of the flow it is asked from (a
    child's operator may not cancel the parent's work in a queue they do not run)."""
    return staffaccess.may_on(user, "operate_queue:cancel", root_queue(job))


def flow_cancel_checked(user: Any, job: Job, why: str, actor: Actor) -> list[Any]:
    if not may_cancel_flow(user, job):
        raise FlashqError(
            f"you may not cancel jobs of {root_queue(job).name}, where the flow's root is"
        )
    return services.flow_cancel(job_id=job.id, actor=actor, reason=why)


@dataclass(frozen=True)
class JobButton:
    """``verb``: in the URL and the form's id (``<verb>-form``); ``right``: the
    operating right asked on the job's queue (the changelist action's permission);
    ``applies``: whether the service would take the job in its state."""

    verb: str
    label: str
    right: str
    question: Callable[[Job], str]  # what the confirmation page asks
    applies: Callable[[Job], bool]
    act: Callable[[Any, Job, str, Actor], str]  # (user, job, reason, actor) -> message


def _retry(user: Any, job: Job, why: str, actor: Actor) -> str:
    done = services.job_retry(job_id=job.id, actor=actor, reason=why)
    return f"Retry: the job is {done.state} again."


def _cancel(user: Any, job: Job, why: str, actor: Actor) -> str:
    services.job_cancel(job_id=job.id, actor=actor, reason=why)
    return "Cancel: the job is cancelled."


def _promote(user: Any, job: Job, why: str, actor: Actor) -> str:
    services.job_promote(job_id=job.id, actor=actor, reason=why)
    return "Promote: the job is ready now."


def _cancel_flow(user: Any, job: Job, why: str, actor: Actor) -> str:
    cancelled = flow_cancel_checked(user, job, why, actor)
    return f"Cancel flow: {len(cancelled)} job(s) cancelled."


def _retry_question(job: Job) -> str:
    if job.state == JobState.COMPLETED:
        return (
            f"Run completed job {job.pk} again? Its attempts and error history are kept, "
            "its result until the new run replaces it; its children are not run again."
        )
    return (
        f"Retry job {job.pk}? It goes back to waiting with fresh attempts, with its "
        "failed, cancelled or expired children."
    )


def _in_flow_and_unfinished(job: Job) -> bool:
    if not job_in_flow(job_id=job.id):
        return False
    root = services.flow_root(job.id)
    return job.state in UNFINISHED or selectors.job_get(job_id=root).state in UNFINISHED


BUTTONS = {
    button.verb: button
    for button in (
        JobButton(
            "retry",
            "Retry…",
            "retry",
            _retry_question,
            lambda job: job.state in services.RETRYABLE,
            _retry,
        ),
        JobButton(
            "cancel",
            "Cancel job…",
            "cancel",
            lambda job: f"Cancel job {job.pk} and its unfinished children?",
            lambda job: job.state in UNFINISHED,
            _cancel,
        ),
        JobButton(
            "promote",
            "Promote…",
            "promote",
            lambda job: f"Promote delayed job {job.pk} (run it now)?",
            lambda job: selectors.reported_state(job, timezone.now()) == selectors.DELAYED,
            _promote,
        ),
        JobButton(
            "cancel-flow",
            "Cancel flow…",
            "cancel",
            lambda job: f"Cancel the whole flow of job {job.pk} (its root and every "
            "unfinished job under it)?",
            _in_flow_and_unfinished,
            _cancel_flow,
        ),
    )
}


def _allowed(user: Any, button: JobButton, job: Job) -> bool:
    if not staffaccess.may_on(user, f"operate_queue:{button.right}", job.queue):
        return False
    return button.verb != "cancel-flow" or may_cancel_flow(user, job)


def job_buttons(user: Any, job: Job) -> list[JobButton]:
    """The buttons ``user`` gets on ``job``'s page: the right first (no state read for
    a user who holds none), then whether the job's state lets the service act."""
    return [
        button for button in BUTTONS.values() if _allowed(user, button, job) and button.applies(job)
    ]


class JobButtonsAdmin(admin.ModelAdmin):
    """The buttons' view, at ``<job>/do/<verb>/`` (``admin:queues_job_do``)."""

    def get_urls(self) -> list[Any]:
        act = self.admin_site.admin_view(self.job_button_view)
        # Before Django's own: its "<object_id>/" catch-all would take this path.
        return [
            path("<path:object_id>/do/<str:verb>/", act, name="queues_job_do"),
            *super().get_urls(),
        ]

    def job_button_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        """GET, or a POST without ``confirm``: the confirmation page with the reason. A
        POST with ``confirm`` and a reason: the service, then back to the job's page."""
        button = BUTTONS.get(verb)
        job = self.get_object(request, unquote(object_id))
        if button is None or job is None or not self.has_view_permission(request, job):
            raise Http404("No such job or button.")
        if not _allowed(request.user, button, job):
            raise PermissionDenied(f"You may not {button.label.rstrip('…').lower()} this job.")
        job_url = reverse("admin:queues_job_change", args=[job.pk])
        confirming = request.method == "POST" and "confirm" in request.POST
        form = ReasonForm(request.POST if confirming else None)
        if confirming and form.is_valid():
            if not button.applies(job):
                self.message_user(
                    request,
                    f"{button.label.rstrip('…')}: not for a {job.state} job.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(job_url)
            try:
                done = button.act(
                    request.user, job, form.cleaned_data["reason"], staff_actor(request)
                )
            except FlashqError as exc:
                self.message_user(
                    request, f"{button.label.rstrip('…')}: {exc.detail}", messages.ERROR
                )
            else:
                self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(job_url)
        context = {
            **self.admin_site.each_context(request),
            "title": button.question(job),
            "opts": self.model._meta,
            "job": job,
            "state": selectors.reported_state(job, timezone.now()),
            "verb": button.label.rstrip("…").lower(),
            "form": form,
            "job_url": job_url,
        }
        status = 400 if confirming else 200
        return TemplateResponse(
            request, "admin/queues/job/confirm_button.html", context, status=status
        )

"""The admin site. Beyond Django's own: a staff user who may view but change nothing
(an auditor) is refused every POST with 403, whatever the page, so a read-only role
stays read-only even where a page would otherwise accept a form (an action, say).
Logging out and changing one's own password stay allowed. Holders of
``security.review_access`` (auditors, superusers) also get the access review: every
token and every staff user's rights, on one audited page or as CSV."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

_CHANGING = ("add_", "change_", "delete_")
# Custom permissions that act (queues.Job's retry/cancel), not only view.
_ACTING = ("retry_", "cancel_", "reveal_", "operate_", "erase_")
# Pages that accept a POST but change nothing: finding erasure receipts by a subject
# that must not travel in a URL (compliance.admin).
_ALWAYS_ALLOWED = ("logout", "password_change", "password_change_done", "erasure_subject_lookup")
REVIEW_ACCESS = "security.review_access"


def may_change_anything(user: Any) -> bool:
    """A model permission, or a per-object one (django-guardian, e.g. an operator's
    queues) or one on a queue pattern, that changes or acts."""
    if user.is_superuser:
        return True
    if any(
        codename.split(".", 1)[1].startswith(_CHANGING + _ACTING)
        for codename in user.get_all_permissions()
    ):
        return True
    from django.db.models import Q
    from guardian.models import GroupObjectPermission, UserObjectPermission

    from security.models import StaffQueueGrant

    acting = r"^(add|change|delete|operate|reveal)_"
    return (
        UserObjectPermission.objects.filter(user=user, permission__codename__regex=acting).exists()
        or GroupObjectPermission.objects.filter(
            group__in=user.groups.all(), permission__codename__regex=acting
        ).exists()
        or StaffQueueGrant.objects.filter(
            Q(user=user) | Q(group__in=user.groups.all()), permission__regex=acting
        ).exists()
    )


class FlashqAdminSite(admin.AdminSite):
    site_header = "flashQ administration"
    site_title = "flashQ admin"
    index_title = "Operations"
    #: No "View site" link: flashQ has no site beyond its API and this admin.
    site_url = None

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)
        name = getattr(view, "__name__", "")

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if (
                request.method not in ("GET", "HEAD", "OPTIONS")
                and name not in _ALWAYS_ALLOWED
                and user.is_authenticated
                and user.is_staff
                and not may_change_anything(user)
            ):
                raise PermissionDenied("This account may only view.")
            response: HttpResponse = inner(request, *args, **kwargs)
            return response

        guarded.__name__ = name
        return guarded

    index_template = "admin/flashq_index.html"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        return [
            path("dashboard.json", self.admin_view(self.dashboard_data), name="dashboard"),
            path("charts.json", self.admin_view(self.charts_data), name="charts"),
            path("events/stream", self.admin_view(self.events_stream), name="events_stream"),
            path("access-review/", self.admin_view(self.access_review), name="access_review"),
            path("internals/", self.admin_view(self.internals_index), name="internals"),
            *super().get_urls(),
        ]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """Django's, with the internal apps grouped for superusers (adminindex)."""
        from .adminindex import grouped_app_list

        return grouped_app_list(request, super().get_app_list(request, app_label))

    def internals_index(self, request: HttpRequest) -> HttpResponse:
        from .adminindex import internals_index

        return internals_index(self, request)

    def access_review(self, request: HttpRequest) -> HttpResponse:
        from django.template.response import TemplateResponse

        from compliance.audit.staff import staff_actor
        from security.accessreview import FORMATS, access_review, access_review_csv

        if not request.user.has_perm(REVIEW_ACCESS):
            raise PermissionDenied
        fmt = request.GET.get("format", "html")
        if fmt not in FORMATS:
            fmt = "html"
        review = access_review(actor=staff_actor(request), fmt=fmt)
        if fmt == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            stamp = f"{review.generated_at:%Y%m%d-%H%M%S}"
            response["Content-Disposition"] = f'attachment; filename="access-review-{stamp}.csv"'
            access_review_csv(review, response)
        else:
            context = {**self.each_context(request), "title": "Access review", "review": review}
            response = TemplateResponse(request, "admin/security/access_review.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def dashboard_data(self, request: HttpRequest) -> HttpResponse:
        from queues.admin.dashboard import dashboard_data

        return dashboard_data(request)

    def charts_data(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's and the queue pages' charts (queues.admin.dashboard)."""
        from queues.admin.dashboard import charts_data

        return charts_data(request)

    def events_stream(self, request: HttpRequest) -> Any:
        """The dashboard's and the job list's live feed (queues.admin.livestream)."""
        from queues.admin.livestream import events_stream

        return events_stream(request)

    def index(self, request: HttpRequest, extra_context: Any = None) -> Any:
        from queues.admin.dashboard import HISTORY_HELP, dashboard_rows
        from queues.dashboard import STATES
        from queues.staffaccess import may_on_some, queues_for

        extra = dict(extra_context or {})
        extra["may_review_access"] = request.user.has_perm(REVIEW_ACCESS)
        if may_on_some(request.user, "view_queue"):
            extra["dashboard"] = dashboard_rows(queues_for(request.user, "view_queue"))["queues"]
            extra["dashboard_states"] = STATES
            extra["dashboard_help"] = HISTORY_HELP
        return super().index(request, extra)


class FlashqAdminConfig(AdminConfig):
    default_site = "flashq_project.adminsite.FlashqAdminSite"

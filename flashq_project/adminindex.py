"""The admin index and sidebar for an on-call operator: the tables third-party apps
keep for themselves (django-q2's tasks, django-axes' login attempts, django-auditlog's
entries) are grouped in one "Internals" section at the end, shown to superusers only;
their pages refuse everyone else too (a model permission on them is not enough), so
an operator's index lists the queues, jobs and schedules they run and nothing of the
machinery."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

#: Each internal app's label and the package it comes from, named beside its tables.
INTERNAL_APPS = {"django_q": "django-q2", "axes": "django-axes", "auditlog": "django-auditlog"}
INTERNALS = "Internals"


def is_superuser(request: HttpRequest) -> bool:
    user: Any = request.user
    return bool(user.is_active and user.is_superuser)


class SuperusersOnly:
    """Mixed into an internal app's ModelAdmin: nothing of it for anyone else."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request) and bool(super().has_module_permission(request))  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request) and bool(super().has_view_permission(request, obj))  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_superuser(request) and bool(super().has_add_permission(request, *args))  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request) and bool(super().has_change_permission(request, obj))  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_superuser(request) and bool(super().has_delete_permission(request, obj))  # type: ignore[misc]


def seal_internals(site: admin.AdminSite) -> None:
    """Make every internal app's ModelAdmin on ``site`` superusers-only (once all apps
    have registered theirs)."""
    for model, model_admin in site._registry.items():
        cls = type(model_admin)
        if model._meta.app_label in INTERNAL_APPS and not issubclass(cls, SuperusersOnly):
            model_admin.__class__ = type(f"Internal{cls.__name__}", (SuperusersOnly, cls), {})


def _internals(app_list: list[dict[str, Any]]) -> dict[str, Any]:
    models = [
        {**model, "name": f"{model['name']} ({INTERNAL_APPS[app['app_label']]})"}
        for app in app_list
        for model in app["models"]
    ]
    return {
        "name": INTERNALS,
        "app_label": "internals",
        "app_url": reverse("admin:internals"),
        "has_module_perms": True,
        "models": sorted(models, key=lambda model: str(model["name"]).lower()),
    }


def grouped_app_list(request: HttpRequest, app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``app_list`` (Django's, one entry per app) with the internal apps taken out and,
    for a superuser, put back as one "Internals" section at the end."""
    internal = [app for app in app_list if app["app_label"] in INTERNAL_APPS]
    rest = [app for app in app_list if app["app_label"] not in INTERNAL_APPS]
    if internal and is_superuser(request):
        rest.append(_internals(internal))
    return rest


def internals_index(site: admin.AdminSite, request: HttpRequest) -> TemplateResponse:
    """The "Internals" section's own page, as an app's index is."""
    if not is_superuser(request):
        raise PermissionDenied
    internal = [app for app in site.get_app_list(request) if app["app_label"] == "internals"]
    if not internal:
        raise PermissionDenied
    context = {
        **site.each_context(request),
        "title": f"{INTERNALS} administration",
        "subtitle": None,
        "app_list": internal,
        "app_label": "internals",
    }
    return TemplateResponse(request, "admin/app_index.html", context)

"""The admin index groups the tables third-party apps keep for themselves (django-q2,
django-axes, django-auditlog) under "Internals", for superusers only: not listed for
anyone else, and their pages refuse anyone else even with a model permission."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission

from .personas import StaffClient, logged_in, make_staff_user

pytestmark = pytest.mark.django_db

INTERNAL_PAGES = (
    "/admin/django_q/failure/",
    "/admin/django_q/success/",
    "/admin/django_q/schedule/",
    "/admin/django_q/ormq/",
    "/admin/axes/accessattempt/",
    "/admin/axes/accesslog/",
    "/admin/axes/accessfailurelog/",
    "/admin/auditlog/logentry/",
    "/admin/django_q/",
    "/admin/axes/",
    "/admin/auditlog/",
    "/admin/internals/",
)


def _sections(page: str) -> list[str]:
    return re.findall(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>', page)


def test_a_superuser_sees_internals_last_and_no_internal_app_elsewhere(
    superuser: StaffClient,
) -> None:
    page = superuser.get("/admin/").content.decode()
    sections = _sections(page)
    assert sections[-1] == "Internals"
    assert not {"Scheduled tasks", "Django Q", "Axes", "Auditlog"} & set(sections)
    internals = page[page.index(">Internals<") :]
    assert "Failed tasks (django-q2)" in internals and "Access attempts (django-axes)" in internals
    assert "Log entries (django-auditlog)" in internals
    # The jobs come before any of it.
    assert page.index(">Jobs<") < page.index("Failed tasks")
    for url in INTERNAL_PAGES:
        assert superuser.get(url).status_code == 200, url
    section = superuser.get("/admin/internals/").content.decode()
    assert "Internals administration" in section and "Failed tasks (django-q2)" in section


@pytest.mark.parametrize("persona", ["operator", "auditor", "staff"])
def test_other_staff_get_no_internals_even_with_a_model_permission(
    persona: str, request: pytest.FixtureRequest
) -> None:
    client: StaffClient = request.getfixturevalue(persona)
    user = client.user
    for app, codename in [
        ("django_q", "view_failure"),
        ("django_q", "change_failure"),
        ("axes", "view_accessattempt"),
        ("auditlog", "view_logentry"),
    ]:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = logged_in(type(user).objects.get(pk=user.pk))
    page = client.get("/admin/").content.decode()
    assert "Internals" not in _sections(page) and "Failed tasks" not in page
    assert "Access attempts" not in page and "Log entries" not in page
    for url in INTERNAL_PAGES:
        assert client.get(url).status_code in (403, 404), url


def test_a_staff_member_made_superuser_gets_them() -> None:
    user = make_staff_user("sam")
    user.is_superuser = True
    user.save()
    assert logged_in(user).get("/admin/django_q/failure/").status_code == 200

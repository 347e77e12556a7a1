"""Roles in the admin, per persona. An auditor (setup_roles' Auditors group) gets 200 on
every list and detail page it may view, 403 on every POST anywhere, and no action,
button or add link; staff without rights see nothing; nobody, superusers included, can
add, change or delete audit events, checkpoints or erasure receipts."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import models

from compliance.audit import chain
from compliance.models import AuditCheckpoint, AuditEvent, ErasureRequest

from .personas import StaffClient, logged_in, make_staff, superuser_client
from .support import Api, make_token, pull, push
from .test_audit_chain import _backdate

pytestmark = pytest.mark.django_db

# Markers of anything that changes something on an admin page.
CONTROLS = ('name="action"', "addlink", 'name="_save"', 'name="_continue"', "deletelink")


@pytest.fixture
def world(api: Api) -> None:
    call_command("setup_roles", stdout=StringIO())
    token = make_token("ops", "*=*,admin")
    push(api, token, queue="jobs:a", data={"ssn": "078-05-1120", "n": 1})
    [job] = pull(api, token, queue="jobs:a")
    api.post(f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "retry": False}, as_=token)
    call_command("gdpr_erase", "nobody", "--execute", "--reason", "r", stdout=StringIO())
    chain.seal_all()
    _backdate([AuditEvent.objects.get(seq=1)], 100)  # a checkpoint names an old event
    first = AuditEvent.objects.get(seq=1)
    chain.checkpoint_create(seq=1, hash=first.hash, events_removed=0, reason="test")


def _pages() -> Iterator[tuple[type[models.Model], str, str | None]]:
    """Every registered model's list URL and the change URL of one of its rows."""
    for model in admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        first = model._default_manager.order_by("pk").first()
        yield model, base, (f"{base}{first.pk}/change/" if first is not None else None)


def test_setup_roles_is_idempotent() -> None:
    call_command("setup_roles", stdout=StringIO())
    call_command("setup_roles", stdout=StringIO())
    assert set(Group.objects.values_list("name", flat=True)) == {"Operators", "Auditors"}
    auditors = Group.objects.get(name="Auditors")
    looks = [p.codename for p in auditors.permissions.all()]
    assert all(code.startswith("view_") or code == "review_access" for code in looks)


def test_an_auditor_reads_everything_it_may_and_can_change_nothing(
    world: Any, auditor: StaffClient
) -> None:
    viewable = {"queues.job", "queues.queue", "queues.schedule", "queues.webhook"}
    viewable |= {"compliance.auditevent"}
    viewable |= {"compliance.auditcheckpoint", "compliance.erasurerequest"}
    viewable |= {"compliance.retentionpolicy"}
    seen = set()
    for model, listing, detail in _pages():
        name = model._meta.label_lower
        expected = 200 if name in viewable else 403
        for url in filter(None, (listing, detail)):
            page = auditor.get(url)
            assert page.status_code == expected, (url, page.status_code)
            if expected == 200:
                seen.add(name)
                text = page.content.decode()
                assert not [c for c in CONTROLS if c in text], (
                    url,
                    [c for c in CONTROLS if c in text],
                )
            assert auditor.post(url, {"action": "delete_selected", "_save": "1"}).status_code == 403
        assert auditor.post(f"{listing}add/", {}).status_code == 403
    assert seen == viewable
    job_page = auditor.get(next(d for m, _, d in _pages() if m._meta.model_name == "job") or "")
    assert "[MASKED]" in job_page.content.decode()
    assert "078-05-1120" not in job_page.content.decode()
    assert auditor.post("/admin/logout/").status_code in (200, 302)  # logging out still works


def test_staff_without_rights_see_nothing(world: Any) -> None:
    nobody = logged_in(make_staff())
    for _, listing, detail in _pages():
        for url in filter(None, (listing, detail)):
            assert nobody.get(url).status_code == 403, url


def test_nobody_edits_the_trail_not_even_a_superuser(world: Any) -> None:
    root = superuser_client()
    for model in (AuditEvent, AuditCheckpoint, ErasureRequest):
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        row = model._default_manager.order_by("pk").first()
        assert row is not None
        listing = root.get(base).content.decode()
        assert f'href="{base}add/"' not in listing and 'name="action"' not in listing
        assert root.get(f"{base}add/").status_code == 403
        assert root.get(f"{base}{row.pk}/delete/").status_code == 403
        detail = root.get(f"{base}{row.pk}/change/").content.decode()
        assert 'name="_save"' not in detail and f"{row.pk}/delete/" not in detail

"""Staff rights change only with an audit event, whatever the path: the admin's user
form, a shell, setup_roles, guardian's shortcuts (what grant_queue and the "Object
permissions" pages call). Each event names who changed what for whom, and never holds
a password or its hash."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from guardian.shortcuts import assign_perm, remove_perm

from compliance.models import AuditEvent
from queues.models import Queue

from .personas import make_staff
from .support import clear_audit

pytestmark = pytest.mark.django_db

USERS = "/admin/auth/user/"


def _staff(name: str = "olga") -> Any:
    return make_staff(name, password="pw-olga-secret")


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _user_form(user: Any, **changes: Any) -> dict[str, Any]:
    """The admin's user change form as the browser posts it."""
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": f"{user.date_joined:%Y-%m-%d}",
        "date_joined_1": f"{user.date_joined:%H:%M:%S}",
        "last_login_0": "",
        "last_login_1": "",
        "groups": [],
        "user_permissions": [],
        "_save": "Save",
    }
    if user.is_staff:
        data["is_staff"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not False}


def _no_secrets(user: Any) -> None:
    user.refresh_from_db()
    for event in AuditEvent.objects.all():
        text = str(event.details)
        assert user.password not in text and "pw-olga-secret" not in text
        assert "password" not in event.details


def test_a_group_added_in_the_admin_user_form_is_recorded(root: Client) -> None:
    call_command("setup_roles", stdout=StringIO())
    olga = _staff()
    operators = Group.objects.get(name="Operators")
    clear_audit()
    form = _user_form(olga, groups=[operators.pk])
    response = root.post(f"{USERS}{olga.pk}/change/", form)
    assert response.status_code == 302, response.content[:3000]
    assert list(olga.groups.values_list("name", flat=True)) == ["Operators"]
    [event] = _events("staff.groupAdd")
    assert (event.actor, event.client_ip) == ("user:root", "192.0.2.10")
    assert event.details == {"user": "olga", "user_id": olga.pk, "groups": ["Operators"]}
    response = root.post(f"{USERS}{olga.pk}/change/", _user_form(olga, groups=[]))
    assert response.status_code == 302
    [removed] = _events("staff.groupRemove")
    assert removed.details["groups"] == ["Operators"] and removed.actor == "user:root"
    _no_secrets(olga)


def test_making_a_user_superuser_in_the_admin_is_recorded(root: Client) -> None:
    olga = _staff()
    clear_audit()
    response = root.post(f"{USERS}{olga.pk}/change/", _user_form(olga, is_superuser="on"))
    assert response.status_code == 302
    [event] = _events("staff.flagChange")
    assert event.actor == "user:root"
    assert event.details["changes"] == {"is_superuser": {"from": False, "to": True}}
    _no_secrets(olga)


def test_flags_and_groups_changed_in_a_shell_are_recorded_too() -> None:
    olga = _staff()
    [created] = _events("staff.flagChange")
    assert created.details["created"] is True
    assert created.details["changes"]["is_staff"] == {"from": False, "to": True}
    clear_audit()
    olga.is_superuser = True
    olga.save()
    olga.is_staff = False
    olga.is_superuser = False
    olga.save()
    flags = _events("staff.flagChange")
    assert [event.details["changes"] for event in flags] == [
        {"is_superuser": {"from": False, "to": True}},
        {"is_staff": {"from": True, "to": False}, "is_superuser": {"from": True, "to": False}},
    ]
    assert {event.actor for event in flags} == {"system:unattributed"}
    group = Group.objects.create(name="ops")
    group.user_set.add(olga)  # from the group's side
    olga.groups.clear()
    assert [e.details["groups"] for e in _events("staff.groupAdd")] == [["ops"]]
    assert [e.details["groups"] for e in _events("staff.groupRemove")] == [["ops"]]
    olga.user_permissions.add(Permission.objects.get(codename="reveal_job"))
    [perm] = _events("staff.permissionChange")
    assert perm.details == {"user": "olga", "user_id": olga.pk, "added": ["queues.reveal_job"]}
    _no_secrets(olga)


def test_a_login_or_a_plain_save_of_a_non_staff_user_writes_nothing() -> None:
    user = get_user_model().objects.create_user("visitor", password="pw-visitor")
    user.first_name = "V"
    user.save()
    user.save(update_fields=["last_login"])
    assert not AuditEvent.objects.filter(action__startswith="staff.").exists()


def test_guardian_grants_and_their_removal_are_recorded() -> None:
    olga = _staff()
    group = Group.objects.create(name="ops")
    queue = Queue.objects.create(name="mail")
    clear_audit()
    assign_perm("queues.operate_queue", olga, queue)
    assign_perm("queues.view_queue", group, queue)
    remove_perm("queues.operate_queue", olga, queue)
    remove_perm("queues.view_queue", group, queue)
    grants = _events("staff.grant")
    assert [
        (e.details.get("user"), e.details.get("group"), e.details["permission"]) for e in grants
    ] == [
        ("olga", None, "queues.operate_queue"),
        (None, "ops", "queues.view_queue"),
    ]
    assert {(e.details["object_type"], e.details["object"]) for e in grants} == {
        ("queues.queue", "mail")
    }
    removals = _events("staff.grantRemove")
    assert [e.details["permission"] for e in removals] == [
        "queues.operate_queue",
        "queues.view_queue",
    ]


def test_setup_roles_records_what_it_set() -> None:
    call_command("setup_roles", stdout=StringIO())
    [event] = _events("roles.setup")
    assert event.actor == "command:setup_roles"
    assert event.details["groups"]["Auditors"]["created"] is True
    assert "security.review_access" in event.details["groups"]["Auditors"]["added"]
    auditors = Group.objects.get(name="Auditors")
    auditors.permissions.add(Permission.objects.get(codename="delete_job"))
    call_command("setup_roles", stdout=StringIO())
    again = _events("roles.setup")[-1]
    assert again.details["groups"]["Auditors"] == {
        "created": False,
        "added": [],
        "removed": ["queues.delete_job"],
    }
    changes = _events("staff.permissionChange")
    assert changes[-1].actor == "command:setup_roles"
    assert changes[-1].details == {"group": "Auditors", "removed": ["queues.delete_job"]}


def test_a_grant_on_guardian_s_object_permissions_page_is_recorded(root: Client) -> None:
    olga = _staff()
    queue = Queue.objects.create(name="mail")
    clear_audit()
    page = f"/admin/queues/queue/{queue.pk}/permissions/user-manage/{olga.pk}/"
    response = root.post(page, {"permissions": ["view_queue", "operate_queue"]})
    assert response.status_code == 302
    grants = _events("staff.grant")
    assert sorted(e.details["permission"] for e in grants) == [
        "queues.operate_queue",
        "queues.view_queue",
    ]
    assert {(e.actor, e.details["user"], e.details["object"]) for e in grants} == {
        ("user:root", "olga", "mail")
    }
    assert root.post(page, {"permissions": ["view_queue"]}).status_code == 302
    [removed] = _events("staff.grantRemove")
    assert removed.details["permission"] == "queues.operate_queue"
    assert removed.actor == "user:root"


def test_deleting_a_staff_user_and_a_grant_on_a_deleted_queue_are_recorded() -> None:
    olga = _staff()
    queue = Queue.objects.create(name="mail")
    assign_perm("queues.view_queue", olga, queue)
    Queue.objects.filter(pk=queue.pk).delete()  # guardian's row outlives the queue
    clear_audit()
    olga_id = olga.pk
    olga.delete()
    actions = [event.action for event in AuditEvent.objects.order_by("id")]
    assert actions == ["staff.grantRemove", "staff.flagChange"]
    gone = _events("staff.grantRemove")[0]
    assert (gone.details["object"], gone.details["object_pk"]) == ("", str(queue.pk))
    assert _events("staff.flagChange")[0].details == {
        "user": "olga",
        "user_id": olga_id,
        "deleted": True,
    }


def test_deleting_a_group_records_what_its_members_lose(root: Client) -> None:
    """Reported: Django removes a deleted group's membership and permission rows without
    m2m_changed, so deleting a staff group changed rights with no event."""
    olga, ivan = _staff(), _staff("ivan")
    group = Group.objects.create(name="ops")
    reveal = Permission.objects.get(codename="reveal_job")
    group.permissions.add(reveal)
    group.user_set.add(olga, ivan)
    assign_perm("queues.view_queue", group, Queue.objects.create(name="mail"))
    clear_audit()
    page = f"/admin/auth/group/{group.pk}/delete/"
    assert root.post(page, {"post": "yes"}).status_code == 302
    assert not Group.objects.exists()
    removed = _events("staff.groupRemove")
    assert [event.details for event in removed] == [
        {"user": name, "user_id": user.pk, "groups": ["ops"], "group_deleted": True}
        for name, user in (("olga", olga), ("ivan", ivan))
    ]
    [lost] = _events("staff.permissionChange")
    assert lost.details == {"group": "ops", "removed": ["queues.reveal_job"], "group_deleted": True}
    [grant] = _events("staff.grantRemove")
    assert (grant.details["group"], grant.details["permission"]) == ("ops", "queues.view_queue")
    assert {e.actor for e in AuditEvent.objects.all()} == {"user:root"}
    # In a shell too; a group without members or permissions leaves nothing to record.
    clear_audit()
    Group.objects.create(name="empty").delete()
    assert not AuditEvent.objects.exists()


def test_renaming_a_group_is_recorded(root: Client) -> None:
    group = Group.objects.create(name="ops")
    group.user_set.add(_staff())
    clear_audit()
    form = {"name": "operators", "permissions": []}
    assert root.post(f"/admin/auth/group/{group.pk}/change/", form).status_code == 302
    [renamed] = _events("staff.groupRename")
    assert renamed.details == {"group_id": group.pk, "from": "ops", "to": "operators"}
    assert renamed.actor == "user:root"
    group.refresh_from_db()
    group.name = "ops-eu"
    group.save()
    group.save()  # unchanged: nothing more
    assert [e.details["to"] for e in _events("staff.groupRename")] == ["operators", "ops-eu"]
    assert [e.action for e in AuditEvent.objects.all()] == ["staff.groupRename"] * 2

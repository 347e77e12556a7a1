"""Every change of a staff user's rights is an audit event, whatever path makes it: the
admin's user and group forms, guardian's "Object permissions" pages, ``setup_roles``,
``grant_queue``, ``createsuperuser`` or a shell. Receivers of Django's own signals are
the catch-all, so no path escapes by forgetting to call a service:

- group membership (``user.groups`` / ``group.user_set``: add, remove, clear, set);
- global permissions of a user or a group (``user_permissions`` / ``permissions``);
- a group's deletion (its members leave it and its permissions go, with no
  ``m2m_changed``) and its renaming;
- ``is_staff``, ``is_superuser`` and, for staff, ``is_active``, and a staff user's
  deletion;
- per-object grants (guardian's user and group object permission rows).

The actor is the one set with ``acting_as`` (the admin's staff user, by
compliance.middleware; a command), else ``command:<name>`` when run by manage.py, else
``system:unattributed``. Events name users, groups and permissions; never a password or
its hash. Bulk writes that bypass signals (``QuerySet.update``, ``bulk_create``, raw
SQL) are not seen here: the application makes none on these tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from compliance.audit import Action, audit_record
from compliance.audit.actors import current_actor

FLAGS = ("is_staff", "is_superuser", "is_active")


def _record(action: Action, details: dict[str, Any], queue: str = "") -> None:
    audit_record(actor=current_actor(), action=action, queue=queue, details=details)


def _user_label(user: Any) -> dict[str, Any]:
    return {"user": user.get_username(), "user_id": user.pk}


def _permission_names(ids: Iterable[int]) -> list[str]:
    rows = Permission.objects.filter(pk__in=list(ids)).values_list(
        "content_type__app_label", "codename"
    )
    return sorted(f"{app}.{codename}" for app, codename in rows)


# -- group membership and global permissions ----------------------------------------


def _related(instance: Any, model: Any) -> Any:
    """The related manager whose rows a change touches, seen from ``instance``."""
    if isinstance(instance, Permission):
        return instance.group_set if model is Group else instance.user_set
    if isinstance(instance, Group):
        return instance.user_set if model is not Permission else instance.permissions
    return instance.groups if model is Group else instance.user_permissions


def _changed_ids(
    sender: Any, instance: Any, action: str, model: Any, pk_set: set[int] | None
) -> tuple[list[int], bool] | None:
    """(ids on the other side, removed?) once a change is made; None before it, except
    that a clear remembers what it is about to remove (by post_clear the rows are gone)."""
    remembered = f"_flashq_cleared_{sender._meta.db_table}"
    if action == "pre_clear":
        setattr(instance, remembered, list(_related(instance, model).values_list("pk", flat=True)))
        return None
    if action == "post_clear":
        return getattr(instance, remembered, []), True
    if action in ("post_add", "post_remove") and pk_set:
        return sorted(pk_set), action == "post_remove"
    return None


def _rights_changed(
    sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, **_: Any
) -> None:
    """The receiver for all three tables: group memberships, and the global permissions
    of users and of groups, changed from either side."""
    changed = _changed_ids(sender, instance, action, model, pk_set)
    if changed is None:
        return
    ids, removed = changed
    if model is Permission or isinstance(instance, Permission):
        _permissions_changed(instance, model, ids, removed=removed, reverse=reverse)
    else:
        _groups_changed(instance, model, ids, removed=removed, reverse=reverse)


def _groups_changed(
    instance: Any, model: Any, ids: list[int], *, removed: bool, reverse: bool
) -> None:
    if reverse:  # group.user_set: the group's members changed
        memberships = [
            (user, [instance.name]) for user in model._default_manager.filter(pk__in=ids)
        ]
    else:
        names = Group.objects.filter(pk__in=ids).values_list("name", flat=True)
        memberships = [(instance, sorted(names))]
    for user, groups in memberships:
        if groups:
            _record(
                Action.STAFF_GROUP_REMOVE if removed else Action.STAFF_GROUP_ADD,
                {**_user_label(user), "groups": groups},
            )


def _permissions_changed(
    instance: Any, model: Any, ids: list[int], *, removed: bool, reverse: bool
) -> None:
    if reverse:  # permission.user_set / group_set: its holders changed
        for holder in model._default_manager.filter(pk__in=ids):
            _permissions_event(holder, [instance.pk], removed=removed)
    else:
        _permissions_event(instance, ids, removed=removed)


def _permissions_event(holder: Any, permission_ids: list[int], *, removed: bool) -> None:
    names = _permission_names(permission_ids)
    if not names:
        return
    who = {"group": holder.name} if isinstance(holder, Group) else _user_label(holder)
    _record(Action.STAFF_PERMISSION_CHANGE, {**who, "removed" if removed else "added": names})


# -- deleting and renaming a group -------------------------------------------------------


def _group_deleted(sender: Any, instance: Group, **_: Any) -> None:
    """Before the delete: Django removes the group's membership and permission rows with
    it, sending no m2m_changed, so each member's loss is recorded here as a removal
    would be (the guardian grants it held go through their own post_delete)."""
    for user in instance.user_set.order_by("pk"):
        _record(
            Action.STAFF_GROUP_REMOVE,
            {**_user_label(user), "groups": [instance.name], "group_deleted": True},
        )
    permissions = list(instance.permissions.values_list("pk", flat=True))
    if permissions:
        _record(
            Action.STAFF_PERMISSION_CHANGE,
            {
                "group": instance.name,
                "removed": _permission_names(permissions),
                "group_deleted": True,
            },
        )


def _group_name_before(sender: Any, instance: Group, **_: Any) -> None:
    before = None
    if instance.pk is not None:
        before = Group.objects.filter(pk=instance.pk).values_list("name", flat=True).first()
    instance._flashq_name = before  # type: ignore[attr-defined]


def _group_renamed(sender: Any, instance: Group, created: bool, **_: Any) -> None:
    # A group's name is what the access review, the events and the roles go by.
    before = getattr(instance, "_flashq_name", None)
    instance._flashq_name = None  # type: ignore[attr-defined]
    if not created and before is not None and before != instance.name:
        _record(
            Action.STAFF_GROUP_RENAME,
            {"group_id": instance.pk, "from": before, "to": instance.name},
        )


# -- is_staff, is_superuser, is_active ---------------------------------------------------


def _flags_before(sender: Any, instance: Any, update_fields: Any = None, **_: Any) -> None:
    if update_fields is not None and not set(update_fields) & set(FLAGS):
        instance._flashq_flags = None  # e.g. last_login on every login: nothing to compare
        return
    before = None
    if instance.pk is not None:
        before = sender._default_manager.filter(pk=instance.pk).values(*FLAGS).first()
    instance._flashq_flags = before or dict.fromkeys(FLAGS, None)


def _staff_deleted(sender: Any, instance: Any, **_: Any) -> None:
    if instance.is_staff or instance.is_superuser:
        _record(Action.STAFF_FLAG_CHANGE, {**_user_label(instance), "deleted": True})


def _flags_after(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    before = getattr(instance, "_flashq_flags", None)
    if before is None:
        return
    instance._flashq_flags = None
    after = {flag: getattr(instance, flag) for flag in FLAGS}
    if created:
        before = {"is_staff": False, "is_superuser": False, "is_active": after["is_active"]}
    changes = {
        flag: {"from": before[flag], "to": after[flag]}
        for flag in FLAGS
        if before[flag] != after[flag]
    }
    staff = any(before[f] or after[f] for f in ("is_staff", "is_superuser"))
    if not changes or not staff:
        return  # an account that is not and was not staff: no admin right moved
    details = {**_user_label(instance), "created": created, "changes": changes}
    _record(Action.STAFF_FLAG_CHANGE, details)


# -- per-object grants (django-guardian) -------------------------------------------------


def _grant_details(row: Any) -> dict[str, Any]:
    holder = {"group": row.group.name} if hasattr(row, "group_id") else _user_label(row.user)
    permission = row.permission
    model = row.content_type.model_class()
    # The object may be gone (guardian's rows do not cascade from it): name it if we can.
    target = model._default_manager.filter(pk=row.object_pk).first() if model else None
    return {
        **holder,
        "permission": f"{permission.content_type.app_label}.{permission.codename}",
        "object_type": f"{row.content_type.app_label}.{row.content_type.model}",
        "object_pk": str(row.object_pk),
        "object": str(target) if target is not None else "",
    }


def _queue_of(details: dict[str, Any]) -> str:
    """The queue a grant is on, so that it is found among the queue's events (its
    History, the trail filtered by queue)."""
    return str(details["object"]) if details["object_type"] == "queues.queue" else ""


def _granted(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    details = _grant_details(instance)
    _record(Action.STAFF_GRANT, {**details, "created": created}, queue=_queue_of(details))


def _grant_removed(sender: Any, instance: Any, **_: Any) -> None:
    details = _grant_details(instance)
    _record(Action.STAFF_GRANT_REMOVE, details, queue=_queue_of(details))


def connect() -> None:
    """Called once from compliance.apps."""
    from guardian.models import GroupObjectPermission, UserObjectPermission

    user_model = get_user_model()
    uid = "flashq.staffrights"
    for through in (
        user_model.groups.through,
        user_model.user_permissions.through,
        Group.permissions.through,
    ):
        m2m_changed.connect(_rights_changed, sender=through, dispatch_uid=uid)
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid=uid)
    pre_save.connect(_group_name_before, sender=Group, dispatch_uid=uid)
    post_save.connect(_group_renamed, sender=Group, dispatch_uid=uid)
    pre_save.connect(_flags_before, sender=user_model, dispatch_uid=uid)
    post_save.connect(_flags_after, sender=user_model, dispatch_uid=uid)
    post_delete.connect(_staff_deleted, sender=user_model, dispatch_uid=uid)
    for model in (UserObjectPermission, GroupObjectPermission):
        post_save.connect(_granted, sender=model, dispatch_uid=uid)
        post_delete.connect(_grant_removed, sender=model, dispatch_uid=uid)

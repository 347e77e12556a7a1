"""What a staff user may do on which queue in the admin.

A right held globally (a model permission, e.g. the Auditors' ``view_queue``) covers
every queue; otherwise it is held per queue through django-guardian (an operator is
granted the queues they run). Jobs follow their queue:

- ``view_queue``: see the queue and its jobs;
- ``change_queue``: its settings, pause and resume;
- ``operate_queue``: retry, cancel, delete and promote its jobs (globally also
  ``retry_job``, ``cancel_job``, ``delete_job`` and ``change_job``), pause, resume and
  trigger its schedules (globally ``change_schedule``) and delete them
  (``delete_schedule``);
- ``reveal_queue``: its jobs' sensitive fields unmasked (globally ``reveal_job``).

A right may also be held on a queue pattern (``grant_queue 'mail*'``: a
security.StaffQueueGrant of the user or one of their groups), matched as a token rule's
pattern is (security.access.pattern_matches): it covers every queue the pattern
matches, those created after the grant included, and never an internal queue.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from security.access import pattern_matches
from security.models import StaffQueueGrant

from .models import Queue

# The global job permission that stands for an operating right on every queue.
GLOBAL_EQUIVALENT = {
    "operate_queue:retry": "queues.retry_job",
    "operate_queue:cancel": "queues.cancel_job",
    "operate_queue:delete": "queues.delete_job",
    "operate_queue:promote": "queues.change_job",
    "operate_queue:schedule": "queues.change_schedule",
    "operate_queue:schedule_delete": "queues.delete_schedule",
    "reveal_queue": "queues.reveal_job",
    "view_queue": "queues.view_queue",
    "change_queue": "queues.change_queue",
}


def _global(user: Any, right: str) -> bool:
    return bool(user.has_perm(GLOBAL_EQUIVALENT.get(right, f"queues.{right}")))


def _codename(right: str) -> str:
    return right.split(":", 1)[0]


# Where a user object keeps what it was found to hold, as Django's auth backends keep
# its permissions (``_perm_cache``): the pattern grants and, per right, the ids of the
# queues it covers. A page asks dozens of times (each action's right, each row); the
# database answers once per request. ``forget`` drops both (the grant service calls it
# for the user it changed, so a caller holding that object sees the change).
_PATTERN_CACHE = "_flashq_queue_patterns"
_IDS_CACHE = "_flashq_queue_ids"


def forget(user: Any) -> None:
    for name in (_PATTERN_CACHE, _IDS_CACHE):
        user.__dict__.pop(name, None)


def _patterns(user: Any, right: str) -> list[str]:
    """The queue patterns on which ``user`` holds ``right``, granted to them or to one
    of their groups (read once per user object)."""
    cached: dict[str, list[str]] | None = getattr(user, _PATTERN_CACHE, None)
    if cached is None:
        cached = {}
        rows = StaffQueueGrant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
        for permission, pattern in rows.values_list("permission", "pattern").distinct():
            cached.setdefault(permission, []).append(pattern)
        setattr(user, _PATTERN_CACHE, cached)
    return cached.get(_codename(right), [])


def _queue_ids(user: Any, right: str) -> frozenset[int]:
    """Ids of the queues on which ``user`` holds ``right`` per queue: granted through
    django-guardian or covered by a pattern grant (read once per user object)."""
    codename = _codename(right)
    cached: dict[str, frozenset[int]] = user.__dict__.setdefault(_IDS_CACHE, {})
    if codename not in cached:
        granted = get_objects_for_user(
            user, f"queues.{codename}", klass=Queue, accept_global_perms=False
        )
        ids = set(granted.values_list("pk", flat=True))
        if patterns := _patterns(user, right):
            # Queues are few (tens, not millions): matching their names here keeps the
            # one matcher the token rules use, rather than a second one in SQL.
            ids.update(
                pk
                for pk, name in Queue.objects.values_list("pk", "name")
                if any(pattern_matches(pattern, name) for pattern in patterns)
            )
        cached[codename] = frozenset(ids)
    return cached[codename]


def _staff(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def queues_for(user: Any, right: str) -> QuerySet[Queue]:
    """The queues on which ``user`` holds ``right`` (all of them when held globally)."""
    if not _staff(user):
        return Queue.objects.none()
    if _global(user, right):
        return Queue.objects.all()
    return Queue.objects.filter(pk__in=_queue_ids(user, right))


def may_on_some(user: Any, right: str) -> bool:
    return _staff(user) and (_global(user, right) or bool(_queue_ids(user, right)))


def may_on(user: Any, right: str, queue: Queue) -> bool:
    if not _staff(user):
        return False
    if _global(user, right) or queue.pk in _queue_ids(user, right):
        return True
    # A queue created since the ids were read is still covered by a pattern grant.
    return any(pattern_matches(pattern, queue.name) for pattern in _patterns(user, right))

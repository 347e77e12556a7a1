"""The access review: who can do what, in one read. Every API token with its rules,
addresses, state, expiry and last use; the bootstrap tokens of the settings
(``AUTH_TOKENS``: how many, and that each acts as ``*`` on ``*``); every staff user
(staff or superuser) with their flags, groups, global permissions and per-object grants
(django-guardian: their own and their groups') and grants on queue patterns
(StaffQueueGrant, e.g. ``view_queue`` on ``mail*``). Never a secret or a hash: tokens are
named by name and public id, bootstrap tokens only counted.

Reading it is recorded (``access.review``), like every other read of who may do what."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from compliance.audit.services import csv_cell

from .access import NAMED_ONLY, WILDCARD, expand_verbs
from .models import ApiToken, QueuePermission, StaffQueueGrant
from .selectors import token_state

FORMATS = ("html", "csv")


@dataclass(frozen=True)
class TokenRule:
    effect: str
    pattern: str
    verbs: str

    def __str__(self) -> str:
        return f"{self.effect} {self.pattern}={self.verbs}"


@dataclass(frozen=True)
class TokenAccess:
    name: str
    public_id: str
    family: str
    state: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    allowed_cidrs: list[str]
    rate_limit: str
    rules: list[TokenRule]


@dataclass(frozen=True)
class Grant:
    permission: str
    object_type: str
    object: str
    via: str  # "" for the user's own grant, else "group <name>"

    def __str__(self) -> str:
        held = f" (via {self.via})" if self.via else ""
        return f"{self.permission} on {self.object_type} {self.object}{held}"


@dataclass(frozen=True)
class StaffAccess:
    username: str
    is_staff: bool
    is_superuser: bool
    is_active: bool
    last_login: datetime | None
    groups: list[str]
    permissions: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)


@dataclass(frozen=True)
class BootstrapAccess:
    """The settings' ``AUTH_TOKENS``. They have no row, so no expiry, address list, rate
    limit or recorded last use, and the token list does not show them; yet each acts as
    ``*`` on ``*``. Counted, never shown: not a secret, a hash or any part of one."""

    count: int
    #: As the audit trail names them (actor ``bootstrap:bootstrap-1``).
    names: list[str]
    rule: TokenRule
    verbs: list[str]  # what ``*`` grants
    never: list[str]  # the verbs only a rule naming them grants


@dataclass(frozen=True)
class AccessReview:
    generated_at: datetime
    tokens: list[TokenAccess]
    staff: list[StaffAccess]
    bootstrap: BootstrapAccess


class Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def _tokens(now: datetime) -> list[TokenAccess]:
    rows = ApiToken.objects.prefetch_related("permissions").order_by("name")
    return [
        TokenAccess(
            name=token.name,
            public_id=token.public_id,
            family=token.family or token.public_id,
            state=token_state(token, now=now),
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            last_used_ip=token.last_used_ip,
            allowed_cidrs=list(token.allowed_cidrs or []),
            rate_limit=token.rate_limit or "",
            rules=[
                TokenRule(
                    effect=rule.effect,
                    pattern=rule.pattern,
                    verbs=rule.verbs,
                )
                for rule in sorted(
                    token.permissions.all(),
                    key=lambda rule: (rule.effect != QueuePermission.Effect.DENY, rule.pk),
                )
            ],
        )
        for token in rows
    ]


def _bootstrap() -> BootstrapAccess:
    count = len(settings.AUTH_TOKENS)
    return BootstrapAccess(
        count=count,
        names=[f"bootstrap-{index}" for index in range(1, count + 1)],
        rule=TokenRule(effect=QueuePermission.Effect.ALLOW, pattern=WILDCARD, verbs=WILDCARD),
        verbs=sorted(expand_verbs([WILDCARD], allow=True)),
        never=sorted(NAMED_ONLY),
    )


def _dotted(permission: Any) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def _grants(rows: Any, via: str) -> list[Grant]:
    return [
        Grant(
            permission=_dotted(row.permission),
            object_type=f"{row.content_type.app_label}.{row.content_type.model}",
            object=str(row.content_object) if row.content_object is not None else row.object_pk,
            via=via,
        )
        for row in rows
    ]


def _pattern_grants(rows: Any, via: str) -> list[Grant]:
    return [
        Grant(
            permission=f"queues.{row.permission}",
            object_type="queue pattern",
            object=row.pattern,
            via=via,
        )
        for row in rows
    ]


def _staff() -> list[StaffAccess]:
    from guardian.models import GroupObjectPermission, UserObjectPermission

    users = list(
        get_user_model()
        ._default_manager.filter(Q(is_staff=True) | Q(is_superuser=True))
        .prefetch_related("groups", "user_permissions__content_type")
        .order_by("username")
    )
    related = ("permission__content_type", "content_type")
    own: dict[int, list[Any]] = defaultdict(list)
    for row in (
        UserObjectPermission.objects.filter(user__in=users)
        .select_related(*related)
        .prefetch_related("content_object")
        .order_by("pk")
    ):
        own[row.user_id].append(row)
    by_group: dict[int, list[Any]] = defaultdict(list)
    for group_row in (
        GroupObjectPermission.objects.filter(group__user__in=users)
        .distinct()
        .select_related(*related)
        .prefetch_related("content_object")
        .order_by("pk")
    ):
        by_group[group_row.group_id].append(group_row)
    own_patterns: dict[int | None, list[Any]] = defaultdict(list)
    group_patterns: dict[int | None, list[Any]] = defaultdict(list)
    for grant in StaffQueueGrant.objects.filter(
        Q(user__in=users) | Q(group__user__in=users)
    ).distinct():
        if grant.user_id is not None:
            own_patterns[grant.user_id].append(grant)
        else:
            group_patterns[grant.group_id].append(grant)
    return [
        StaffAccess(
            username=user.get_username(),
            is_staff=user.is_staff,
            is_superuser=user.is_superuser,
            is_active=user.is_active,
            last_login=user.last_login,
            groups=sorted(group.name for group in user.groups.all()),
            permissions=sorted(_dotted(p) for p in user.user_permissions.all()),
            grants=_grants(own[user.pk], "")
            + _pattern_grants(own_patterns[user.pk], "")
            + [
                grant
                for group in sorted(user.groups.all(), key=lambda group: group.name)
                for grant in _grants(by_group[group.pk], f"group {group.name}")
                + _pattern_grants(group_patterns[group.pk], f"group {group.name}")
            ],
        )
        for user in users
    ]


def access_review(*, actor: Actor, fmt: str = "html") -> AccessReview:
    """Everything the review shows, read in one transaction, and the read recorded."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    with transaction.atomic():
        now = timezone.now()
        review = AccessReview(
            generated_at=now, tokens=_tokens(now), staff=_staff(), bootstrap=_bootstrap()
        )
        audit_record(
            actor=actor,
            action=Action.ACCESS_REVIEW,
            details={
                "tokens": len(review.tokens),
                "bootstrap_tokens": review.bootstrap.count,
                "staff_users": len(review.staff),
                "format": fmt,
            },
        )
    return review


CSV_COLUMNS = (
    "kind",
    "name",
    "state",
    "expires_at",
    "last_used_at",
    "allowed_cidrs",
    "rules",
    "is_staff",
    "is_superuser",
    "is_active",
    "groups",
    "permissions",
    "grants",
)


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _row(writer: Any, cells: list[Any]) -> None:
    writer.writerow([csv_cell(cell) for cell in cells])


def access_review_csv(review: AccessReview, out: Writable) -> None:
    """The review as one CSV: a row per token, one for the bootstrap tokens (if any),
    then a row per staff user (cells quoted where a spreadsheet would run them as a
    formula)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    bootstrap = review.bootstrap
    if bootstrap.count:
        _row(
            writer,
            [
                "bootstrap",
                f"AUTH_TOKENS ({bootstrap.count}: {', '.join(bootstrap.names)})",
                "active (no expiry)",
                "",
                "",
                "any address",
                str(bootstrap.rule),
                *[""] * 6,
            ],
        )
    for token in review.tokens:
        _row(
            writer,
            [
                "token",
                token.name,
                token.state,
                _when(token.expires_at),
                _when(token.last_used_at),
                " ".join(token.allowed_cidrs),
                "; ".join(str(rule) for rule in token.rules),
                *[""] * 6,
            ],
        )
    for user in review.staff:
        state = "active" if user.is_active else "inactive"
        _row(
            writer,
            [
                "staff",
                user.username,
                state,
                "",
                _when(user.last_login),
                "",
                "",
                user.is_staff,
                user.is_superuser,
                user.is_active,
                " ".join(user.groups),
                " ".join(user.permissions),
                "; ".join(str(grant) for grant in user.grants),
            ],
        )

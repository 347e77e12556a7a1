"""The audit list's filters, built for a long trail: none of them reads the whole
table to offer its choices (Django's field filters and date drill-down each run a
DISTINCT over every event, 50 ms apiece at 100,000 events and linear beyond).

- action: the actions the code can record (``compliance.audit.Action``), plus any
  other seen among the newest events;
- queue and actor: the values seen among the newest ``RECENT`` events; any other
  value still filters when given in the URL (a link from elsewhere, an export);
- created: Django's date filter (today, past 7 days, this month, this year), which
  offers fixed choices.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from compliance.audit import Action
from compliance.audit.models import AuditEvent

#: How many of the newest events the queue and actor filters take their choices from.
RECENT = 5000


def _recent_values(field: str) -> set[str]:
    newest = AuditEvent.objects.order_by("-id").values_list(field, flat=True)[:RECENT]
    return {value for value in newest if value}


class _ValueFilter(admin.SimpleListFilter):
    field = ""

    def choices_for(self) -> set[str]:
        return _recent_values(self.field)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = self.choices_for()
        if self.value():
            values.add(str(self.value()))
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> Any:
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field: self.value()})


class ActionFilter(_ValueFilter):
    title = "action"
    parameter_name = field = "action"

    def choices_for(self) -> set[str]:
        return {str(action) for action in Action} | _recent_values(self.field)


class QueueFilter(_ValueFilter):
    title = "queue"
    parameter_name = field = "queue"


class ActorFilter(_ValueFilter):
    title = "actor"
    parameter_name = field = "actor"


FILTERS: list[Any] = [
    "outcome",
    ActionFilter,
    QueueFilter,
    ActorFilter,
    ("created_at", admin.DateFieldListFilter),
]

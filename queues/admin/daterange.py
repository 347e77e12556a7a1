"""A date-range filter for the job list's times: two inputs, ``from`` (inclusive) and
``before`` (exclusive), sent as ``FIELD__gte`` and ``FIELD__lt``, the names Django's own
date filter uses, so a link built elsewhere (the dashboard's) filters exactly what it
says. Each takes a date (midnight UTC) or an ISO 8601 time, with an offset or in UTC.
A value that is neither lists no job and says why, rather than being ignored (which
would list, and let an action act on, more than was asked for)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.db.models import Field, Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

# A "+01:00" offset whose "+" a hand-typed URL sent unescaped arrives as a space.
_SPACED_OFFSET = re.compile(r"(T|\d \d).*\d( )\d\d:?\d\d$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EXAMPLE = "2026-12-06, 2026-12-06 14:30 or 2026-12-06T14:30:00+01:00"
QUICK = (("last hour", timedelta(hours=1)), ("last 24 h", timedelta(days=1)))


def parse_instant(text: str) -> datetime | None:
    """``text`` as an aware datetime (a date is its midnight, a time without an offset
    is UTC, the admin's time zone), or None if it is neither."""
    text = text.strip()
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.get_current_timezone())
        spaced = _SPACED_OFFSET.search(text)
        if spaced:
            text = text[: spaced.start(2)] + "+" + text[spaced.end(2) :]
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


class DateRangeFilter(admin.FieldListFilter):
    template = "admin/queues/job/date_range_filter.html"

    def __init__(
        self,
        field: Field[Any, Any],
        request: HttpRequest,
        params: dict[str, Any],
        model: type[Model],
        model_admin: Any,
        field_path: str,
    ) -> None:
        self.since_param = f"{field_path}__gte"
        self.before_param = f"{field_path}__lt"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = f"{field_path} (UTC)"
        self.given = {name: self._given(name) for name in (self.since_param, self.before_param)}
        self.bounds: dict[str, datetime] = {}
        self.problems: list[str] = []
        for name, text in self.given.items():
            if not text:
                continue
            moment = parse_instant(text)
            if moment is None:
                side = "From" if name == self.since_param else "Before"
                self.problems.append(
                    f'{side} ({field_path}): "{text}" is not a date or a time; write it as '
                    f"{EXAMPLE} (UTC unless an offset is given). No job is listed until it is."
                )
            else:
                self.bounds[name] = moment
        for problem in self.problems:
            messages.error(request, problem)

    def _given(self, name: str) -> str:
        value = self.used_parameters.get(name)
        if isinstance(value, list):
            value = value[-1] if value else ""
        return str(value or "")

    def expected_parameters(self) -> list[str | None]:
        return [self.since_param, self.before_param]

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.problems:
            return queryset.none()
        lookups = {name: moment for name, moment in self.bounds.items()}
        return queryset.filter(**lookups) if lookups else queryset

    def choices(self, changelist: Any) -> Iterator[Any]:
        """One choice: what the template needs for its form (the values given, the
        other parameters of the list to keep) and its quick links."""
        mine = {self.since_param, self.before_param, PAGE_VAR, ERROR_FLAG}
        keep = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in mine
            for value in values
        ]
        now = timezone.now().replace(microsecond=0)
        yield {
            "since_param": self.since_param,
            "before_param": self.before_param,
            "since": self.given[self.since_param],
            "before": self.given[self.before_param],
            "keep": keep,
            "example": EXAMPLE,
            "any": changelist.get_query_string(remove=[self.since_param, self.before_param]),
            "selected": bool(self.bounds or self.problems),
            "quick": [
                (
                    label,
                    changelist.get_query_string(
                        {self.since_param: (now - span).isoformat()}, [self.before_param]
                    ),
                )
                for label, span in QUICK
            ],
        }

"""Hot statements bound by PostgreSQL itself, and a push's INSERT prepared.

Django's cursors on psycopg 3 bind parameters client side (``ClientCursor``): every
value is quoted into the statement's text in Python, and PostgreSQL parses and plans
the whole text again on every run. ``bound_cursor`` runs a statement on psycopg's own
cursor instead: the values travel apart from the text (psycopg's C dumpers, no quoting
in Python). With ``prepare=True`` the statement is also prepared on its connection at
its first run (``DB_PREPARED_STATEMENTS``, on by default): parsed once per connection,
and after five runs planned once too when PostgreSQL finds its generic plan no worse.
That suits a statement whose plan cannot depend on its values, such as a push's INSERT
(PostgreSQL's CPU per push: 0.51 ms client bound, 0.39 ms prepared). A query whose
best plan depends on its values (the claim: which queue, how many) is bound but never
prepared, so it is planned for its values every time. psycopg prepares nothing else
(settings: the threshold is out of reach).

psycopg forgets its prepared statements (``DEALLOCATE ALL``) at any rollback, a failed
request's included; the next push prepares its INSERT again. A migration that changes
what the INSERT returns (the audit event's id type) fails it on connections that
prepared it ("cached plan must not change result type") until they are replaced:
restart the app after such a migration.

``bound_objects`` runs such a query and makes model instances of its rows as
``Model.objects.raw`` would (the same values, converters and deferred fields), but
straight from the rows when ``Model.__init__`` would only fill in the instance: a pull
of 100 spent 2.35 ms in RawQuerySet's machinery, 0.7 ms this way.

These are for the few statements that run on every push and pull, whose text is the
same from call to call; the rest of the app keeps Django's cursors. Query logging
(``connection.queries``, ``assertNumQueries``) shows a bound statement as client binding
would have sent it, its values in place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import psycopg
from django.db import connection, connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

M = TypeVar("M", bound=models.Model)


class _Unprepared(ServerBindingCursor):  # type: ignore[misc]  # Django's, untyped
    """Bound, never prepared: planned for its values at every run."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=False, **kwargs)


class _Prepared(ServerBindingCursor):  # type: ignore[misc]  # Django's, untyped
    """Bound, and prepared at its first run on a connection (if prepared statements
    are on: psycopg's threshold is then set, and ``prepare=True`` passes it)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=True, **kwargs)


class _Logged(CursorDebugWrapper):
    """Query logging with the statement as client binding would have sent it."""

    def debug_sql(
        self,
        sql: Any = None,
        params: Any = None,
        use_last_executed_query: bool = False,
        many: bool = False,
    ) -> Any:
        if use_last_executed_query and not many:
            # As Django's last_executed_query: what cannot be composed is logged as
            # it is, and the run itself raises the error, wrapped.
            with suppress(psycopg.Error):
                sql = self.db.ops.compose_sql(sql, params)
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


def _open(db: BaseDatabaseWrapper, *, prepare: bool) -> CursorWrapper:
    """As Django's ``BaseDatabaseWrapper._cursor``: the health check (CONN_HEALTH_CHECKS),
    a connection, the thread check, the wrapper."""
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = (_Prepared if prepare else _Unprepared)(db.connection)
    return (_Logged if db.queries_logged else CursorWrapper)(raw, db)


@contextmanager
def bound_cursor(*, prepare: bool) -> Iterator[CursorWrapper]:
    """A Django cursor (error wrapping, execute wrappers, query logging) over a
    server-binding psycopg cursor of the default connection; ``prepare``: prepare the
    statement (see above). PostgreSQL only."""
    with _open(connection, prepare=prepare) as cursor:
        yield cursor


# Descriptors whose __set__ on a new instance only writes the instance's __dict__: a
# row's values can then go straight into it. A descriptor class of another app says so
# with ``sets_instance_dict = True`` (security.fields.SealedAttribute).
_PLAIN_SETTERS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _plain(model: type[models.Model]) -> bool:
    """Whether ``Model.__init__`` (and ``from_db``) are Django's own and every field's
    descriptor only writes the instance's __dict__. Init signal receivers are checked
    on every call (they may be connected at any time)."""
    if model.__init__ is not models.Model.__init__:
        return False
    if model.from_db.__func__ is not models.Model.from_db.__func__:  # type: ignore[attr-defined]
        return False
    for field in model._meta.concrete_fields:
        descriptor = model.__dict__.get(field.attname) or getattr(model, field.attname)
        kind = type(descriptor)
        if kind not in _PLAIN_SETTERS and not getattr(kind, "sets_instance_dict", False):
            return False
    return True


@dataclass(frozen=True)
class _Shape:
    """How the rows of one statement become instances."""

    picks: list[int]  # the row's field columns, in the model's concrete-field order
    names: list[str]  # their attribute names, in that order
    converting: list[tuple[int, Col, list[Any]]]  # (position among picks, col, converters)
    extras: list[tuple[int, str]]  # columns that are no field: set as attributes
    plain: bool


@cache
def _shape(model: type[models.Model], columns: tuple[str, ...], alias: str) -> _Shape:
    """For rows of ``columns``: the field columns in the order ``from_db`` and
    ``Model.__init__`` take them, each one's converters (as Django's compiler finds
    them: the backend's, then the field's), and the other columns, which RawQuerySet
    sets as attributes (a column a newer migration added, say)."""
    if model._meta.pk.column not in columns:
        raise ValueError(f"rows of {model.__name__} need its primary key")
    db = connections[alias]
    fields = {field.column: n for n, field in enumerate(model._meta.concrete_fields)}
    known = sorted(
        (fields[column], index) for index, column in enumerate(columns) if column in fields
    )
    converting = []
    for position, (n, _) in enumerate(known):
        col = model._meta.concrete_fields[n].get_col(model._meta.db_table)
        converters = db.ops.get_db_converters(col) + col.get_db_converters(db)
        if converters:
            converting.append((position, col, converters))
    return _Shape(
        picks=[index for _, index in known],
        names=[model._meta.concrete_fields[n].attname for n, _ in known],
        converting=converting,
        extras=[(index, column) for index, column in enumerate(columns) if column not in fields],
        plain=_plain(model),
    )


def bound_objects(model: type[M], sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[M]:
    """The instances of ``model`` a statement returns (its pk and any of its fields,
    the rest deferred; other columns as attributes), as ``model.objects.raw(sql,
    params)`` would give them, bound and never prepared. Built straight from the rows
    when ``Model.__init__`` would do no more than fill them in (RawQuerySet's machinery
    cost 2.35 ms for 100 jobs, this 0.7 ms), else through ``Model.from_db``. PostgreSQL
    only."""
    alias = router.db_for_read(model)
    db = connections[alias]
    adapt = db.ops.adapt_unknown_value
    adapted: Any = (
        {key: adapt(value) for key, value in params.items()}
        if isinstance(params, Mapping)
        else [adapt(value) for value in params]
    )
    with _open(db, prepare=False) as cursor:
        cursor.execute(sql, adapted)
        columns = tuple(column.name for column in cursor.description)
        rows = cursor.fetchall()
    shape = _shape(model, columns, alias)
    direct = shape.plain and not (pre_init.has_listeners(model) or post_init.has_listeners(model))
    objects = []
    for row in rows:
        values = [row[index] for index in shape.picks]
        for position, col, converters in shape.converting:
            for converter in converters:
                values[position] = converter(values[position], col, db)
        if direct:
            obj = model.__new__(model)
            obj.__dict__.update(zip(shape.names, values, strict=True))
            obj._state = ModelState()
            obj._state.adding = False
            obj._state.db = alias
        else:
            obj = model.from_db(alias, shape.names, values)
        for index, name in shape.extras:
            setattr(obj, name, row[index])
        objects.append(obj)
    return objects

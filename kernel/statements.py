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

These are for the few statements that run on every push and pull, whose text is the
same from call to call; the rest of the app keeps Django's cursors. Query logging
(``connection.queries``, ``assertNumQueries``) shows a bound statement as client binding
would have sent it, its values in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from django.db import connection, connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models.query import RawQuerySet
from django.db.models.sql.query import RawQuery

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


class _BoundRawQuery(RawQuery):
    """Django's raw query (5.2's ``_execute_query``), bound, never prepared."""

    def _execute_query(self) -> None:
        db = connections[self.using]
        adapt = db.ops.adapt_unknown_value
        params: Any = None
        if self.params_type is tuple:
            params = tuple(adapt(value) for value in self.params)
        elif self.params_type is dict:
            params = {key: adapt(value) for key, value in self.params.items()}
        cursor = _open(db, prepare=False)
        self.cursor = cursor
        cursor.execute(self.sql, params)


def bound_raw(model: type[M], sql: str, params: Any) -> RawQuerySet[M]:
    """``model.objects.raw(sql, params)``, bound and never prepared. PostgreSQL only."""
    using = router.db_for_read(model)
    query = _BoundRawQuery(sql, using, params=params)
    return RawQuerySet(sql, model=model, query=query, params=params, using=using)  # type: ignore[arg-type]

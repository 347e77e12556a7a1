"""Hand-built INSERT statements for the hot path.

The ORM compiles an INSERT on every call (for one row, about as long as the database
takes to run it). The push writes a job and its audit event in one statement, which the
ORM cannot express anyway; the column lists here are built once per model, and values
go through each field's own ``pre_save`` and ``get_db_prep_save``, exactly as ``save()``
would send them (defaults, sealing, JSON adaptation)."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection, models


@cache
def insert_columns(model: type[models.Model]) -> tuple[list[models.Field[Any, Any]], str]:
    """The fields an INSERT writes (an auto-increment id is left to the database) and
    ``INSERT INTO table (columns) VALUES (%s, ...)`` for one row."""
    fields = [
        field
        for field in model._meta.concrete_fields
        if not isinstance(field, models.AutoField | models.BigAutoField)
    ]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 (names from the model)
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    return fields, sql


def insert_params(obj: models.Model) -> list[Any]:
    """``obj``'s values for ``insert_columns(type(obj))``'s statement."""
    fields, _ = insert_columns(type(obj))
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]

"""A model field whose column holds only ciphertext (security.encryption).

On the model the attribute is the plain JSON value. Read from the database it is kept
sealed until first accessed, then opened with the row's primary key and the field's
name as associated data. ``save()``, ``bulk_create`` and queues.bulkinsert seal it with
the row's primary key on the way in (``pre_save``).

A plain value whose JSON was already made (for a size check) may be set as
``Dumped(value, dump(value))``: it reads as the value, and is sealed from those bytes
instead of being encoded again.

Anything that writes the column without an instance must pass ``Sealed`` values made
with ``Sealed.of``: ``QuerySet.update(field=Sealed.of(...))``; and ``bulk_update``, which
reads attributes and skips ``pre_save``, goes through ``bulk_update_sealed``. A plain
value given to the column is refused with TypeError rather than
stored in clear; lookups on the column are refused the same way: ciphertext cannot be
searched.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.query_utils import DeferredAttribute

from .encryption import key_id_of, seal, seal_dumped, unseal

_EVERYTHING = object()  # "no value is empty": every value is sealed, NULL is not used


class Sealed:
    """A sealed value, to be written as it is."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    @classmethod
    def of(cls, value: Any, *, pk: uuid.UUID, field: str) -> Sealed:
        return cls(seal(value, job_id=pk, field=field))

    @property
    def key_id(self) -> str:
        return key_id_of(self.blob)

    def __eq__(self, other: object) -> bool:
        # The same stored bytes (a value sealed again never compares equal: new nonce).
        return isinstance(other, Sealed) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    def __lt__(self, other: Sealed) -> bool:
        return self.blob < other.blob

    def __repr__(self) -> str:
        return f"<Sealed {len(self.blob)} bytes under key {self.key_id!r}>"


class Stored(Sealed):
    """A sealed value as read from the database, opened on first access."""


class Dumped:
    """A plain value and its ``security.encryption.dump``, to be sealed from it."""

    __slots__ = ("dumped", "value")

    def __init__(self, value: Any, dumped: bytes) -> None:
        self.value = value
        self.dumped = dumped


class SealedAttribute(DeferredAttribute):
    """Opens the stored value on first access and keeps the plain value. A ``Sealed``
    put on the instance to be written is returned as it is."""

    field: SealedJSONField
    # Its __set__ only writes the instance's __dict__ (kernel.statements.bound_objects).
    sets_instance_dict = True

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Stored):
            value = unseal(value.blob, job_id=instance.pk, field=self.field.name)
            instance.__dict__[self.field.attname] = value
        elif isinstance(value, Dumped):
            return value.value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        # A data descriptor (unlike DeferredAttribute), so reads always pass __get__
        # even once the value is in the instance's __dict__.
        instance.__dict__[self.field.attname] = value


class SealedJSONField(models.Field):
    """JSON on the model, AES-256-GCM in the column (bytea / BLOB).

    ``empty``: a value stored as NULL instead of being sealed, and returned (a copy)
    for NULL: ``None`` for an optional result, ``""`` for no error, ``[]`` for no
    history. Without it every value is sealed and the column is NOT NULL.
    """

    descriptor_class = SealedAttribute
    description = "JSON, encrypted at rest"

    def __init__(self, *args: Any, empty: Any = _EVERYTHING, **kwargs: Any) -> None:
        self.empty = empty
        kwargs.setdefault("editable", False)
        if empty is not _EVERYTHING:
            kwargs["null"] = True
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.empty is not _EVERYTHING:
            kwargs["empty"] = self.empty
            kwargs.pop("null", None)
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        return "BinaryField"

    def _empty_value(self) -> Any:
        return copy.copy(self.empty)

    def get_default(self) -> Any:
        if self.has_default() or self.empty is _EVERYTHING:
            return super().get_default()
        return self._empty_value()

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if value is None:
            return None if self.empty is _EVERYTHING else self._empty_value()
        return Stored(bytes(value))

    def to_python(self, value: Any) -> Any:
        return value

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        kept = model_instance.__dict__.get(self.attname)
        if isinstance(kept, Sealed):
            return kept  # never opened: written back as it was read
        if isinstance(kept, Dumped):
            # Used once: the plain value is what the instance holds from now on.
            model_instance.__dict__[self.attname] = kept.value
            if kept.value != self.empty:
                return Sealed(seal_dumped(kept.dumped, job_id=model_instance.pk, field=self.name))
        value = getattr(model_instance, self.attname)
        if self.empty is not _EVERYTHING and value == self.empty:
            return None
        return Sealed.of(value, pk=model_instance.pk, field=self.name)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.blob
        raise TypeError(
            f"{self.model.__name__}.{self.name} is encrypted: write it through the model "
            "(save, bulk_create) or as Sealed.of(value, pk=..., field=...); it cannot be "
            "searched"
        )

    def value_to_string(self, obj: models.Model) -> str:
        raise TypeError(f"{self.name} is encrypted and is not serialised in clear")


def bulk_update_sealed(
    model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]
) -> None:
    """``bulk_update`` for fields that may be sealed: each sealed field's plain value is
    sealed with its row's primary key for the statement, then put back."""
    sealed = [
        field
        for field in (model._meta.get_field(name) for name in fields)
        if isinstance(field, SealedJSONField)
    ]
    plain = [[obj.__dict__.get(field.attname) for field in sealed] for obj in objs]
    try:
        for obj in objs:
            for field in sealed:
                obj.__dict__[field.attname] = field.pre_save(obj, False)
        model._default_manager.bulk_update(objs, fields)
    finally:
        for obj, values in zip(objs, plain, strict=True):
            for field, value in zip(sealed, values, strict=True):
                obj.__dict__[field.attname] = value

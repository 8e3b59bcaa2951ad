"""An object's field values as JSON, for the ``before`` and ``after`` of an event.

One generic function serves every model: each concrete field by its column
name (``team_id`` for a foreign key). Secret fields are kept in the
in-memory snapshot, so that a change of secret can be noticed, and replaced
by a marker when the event is written (:func:`redact`): the trail never
holds a secret, a hash of one or its ciphertext.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

from django.db import models

# Stored secrets, whatever their model: never written into the trail. Also
# any field named like them (``previous_secret_hash``, ``encrypted_token``).
SECRET_FIELDS = frozenset({"secret_hash", "encrypted_secret"})
# What the trail says instead, under this key.
SECRET_KEY = "secret"
SECRET_SET = "set"
SECRET_CHANGED = "changed"

Snapshot = dict[str, Any]


def is_secret_field(name: str) -> bool:
    return name in SECRET_FIELDS or name.endswith("secret_hash") or name.startswith("encrypted_")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "<binary>"
    raise TypeError(f"cannot record a {type(value).__name__} in the audit trail")


def audit_snapshot(instance: models.Model) -> Snapshot:
    """The current field values of ``instance``, JSON-safe (secrets still in)."""
    values = {
        field.attname: field.value_from_object(instance) for field in instance._meta.concrete_fields
    }
    # A round trip through JSON gives exactly what the database will return.
    return json.loads(json.dumps(values, default=_json_default))


def volatile_fields(model: type[models.Model]) -> frozenset[str]:
    """Fields that change on every save (``auto_now``): not a change by themselves."""
    return frozenset(
        field.attname for field in model._meta.concrete_fields if getattr(field, "auto_now", False)
    )


def differs(before: Snapshot, after: Snapshot, *, ignore: frozenset[str] = frozenset()) -> bool:
    keys = (set(before) | set(after)) - ignore
    return any(before.get(key) != after.get(key) for key in keys)


def redact(
    before: Snapshot | None, after: Snapshot | None
) -> tuple[Snapshot | None, Snapshot | None]:
    """``before`` and ``after`` without secret fields, and ``"secret"`` saying what happened.

    ``"set"`` where the object holds a secret, ``"changed"`` in ``after``
    when the change replaced it.
    """
    changed = (
        before is not None
        and after is not None
        and any(before.get(name) != after.get(name) for name in before if is_secret_field(name))
    )
    return _without_secrets(before, SECRET_SET), _without_secrets(
        after, SECRET_CHANGED if changed else SECRET_SET
    )


def _without_secrets(snapshot: Snapshot | None, marker: str) -> Snapshot | None:
    if snapshot is None:
        return None
    clean = {key: value for key, value in snapshot.items() if not is_secret_field(key)}
    if len(clean) != len(snapshot):
        clean[SECRET_KEY] = marker
    return clean

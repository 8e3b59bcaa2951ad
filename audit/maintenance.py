"""The one way past the audit table's append-only triggers: maintenance mode.

The triggers installed by migration ``0002_append_only`` refuse UPDATE,
DELETE and (PostgreSQL) TRUNCATE on the audit table unless maintenance mode
is on *in the refusing transaction*:

- PostgreSQL: the setting ``gateway.audit_maintenance`` is ``on``. It is
  set with ``set_config(..., is_local => true)``, so it lasts until the end
  of the current transaction and is seen by no other session.
- SQLite (no session settings): the one row of the control table
  ``audit_maintenance`` says ``enabled = 1``. The row is changed and changed
  back inside the current transaction; other connections only ever see
  committed data, so they never see it on. A missing row means off.

Only :func:`audit_maintenance` turns it on, and only the ``flush`` command
uses it (``audit/management/commands/flush.py``): emptying every table
includes the audit trail, and the test runner flushes between transactional
tests. The mode is not a security boundary: whoever may run SQL as the
table's owner may also drop the triggers. It keeps the application, the
admin and stray SQL from rewriting history.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

SETTING = "gateway.audit_maintenance"
CONTROL_TABLE = "audit_maintenance"


@contextmanager
def audit_maintenance(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Allow rewriting the audit table on ``connection`` for one transaction.

    Opens that transaction (or joins the caller's): the mode ends with it,
    on commit as on rollback.
    """
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT set_config(%s, 'on', true)", [SETTING])
            elif _has_control_table(connection, cursor):
                cursor.execute(f"UPDATE {CONTROL_TABLE} SET enabled = 1")  # noqa: S608
        yield
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT set_config(%s, 'off', true)", [SETTING])
            elif _has_control_table(connection, cursor):
                cursor.execute(f"UPDATE {CONTROL_TABLE} SET enabled = 0")  # noqa: S608


def _has_control_table(connection: BaseDatabaseWrapper, cursor: object) -> bool:
    # Absent before the audit migrations ran (flushing such a database needs no mode).
    return CONTROL_TABLE in connection.introspection.table_names(cursor)

"""``manage.py flush``, able to empty the append-only audit table too.

Django's ``flush`` empties every table in one go (one ``TRUNCATE`` on
PostgreSQL, a ``DELETE`` per table on SQLite), and the audit table's
triggers refuse that. This command, which takes the place of Django's
because ``audit`` is an installed app, runs the same flush inside
:func:`audit.maintenance.audit_maintenance`, so the triggers let the flush
through and nothing else: the mode is local to the flush's transaction.

Django's test runner (and pytest-django's ``transactional_db``) calls
``flush`` between tests, which is what makes the append-only table
compatible with transactional tests. An operator who flushes is asked
before anything happens, outside any transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush
from django.db import connections

from audit.maintenance import audit_maintenance


class Command(flush.Command):
    help = f"{flush.Command.help} The audit trail is erased too."

    def handle(self, **options: Any) -> None:
        database = options["database"]
        if options["interactive"]:
            confirm = input(
                f'You have requested a flush of the "{database}" database.\n'
                "This will IRREVERSIBLY DESTROY all data, the audit trail included,\n"
                "and return each table to an empty state.\n"
                "Are you sure you want to do this?\n\n"
                "    Type 'yes' to continue, or 'no' to cancel: "
            )
            if confirm != "yes":
                self.stdout.write("Flush cancelled.")
                return
        with audit_maintenance(connections[database]):
            super().handle(**{**options, "interactive": False})

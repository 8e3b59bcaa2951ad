"""``manage.py rebuild_rollups [--since YYYY-MM-DD]``: recompute rollups from the request log."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from governance.rollups import rollups_rebuild


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since: not a date (YYYY-MM-DD): {text!r}") from None


class Command(BaseCommand):
    help = (
        "Recompute the hourly and daily usage rollups of each UTC day from the request log "
        "(all days that still have their records, or from --since on), then catch up."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", type=_date, default=None, help="first UTC day (YYYY-MM-DD)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        try:
            run = rollups_rebuild(since=options["since"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if run.skipped:
            raise CommandError("the rollup job is running; try again when it is done")
        self.stdout.write(
            f"rebuilt {run.days} days; rollups hold the records up to id "
            f"{run.records_seen_up_to} ({time.monotonic() - started:.1f}s)"
        )

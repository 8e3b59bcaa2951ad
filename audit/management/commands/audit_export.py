"""``manage.py audit_export``: write the audit trail as JSON Lines or CSV."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.export import CONTENT_TYPES, export_lines
from audit.selectors import audit_event_list, parse_time_bound


class Command(BaseCommand):
    help = "Export audit events, oldest first, to stdout (streamed)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=sorted(CONTENT_TYPES), default="jsonl")
        parser.add_argument("--since", help="ISO 8601 date or date-time (inclusive)")
        parser.add_argument("--until", help="ISO 8601 date or date-time (exclusive)")
        parser.add_argument("--actor", help="only events by this actor name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            bounds = {
                name: parse_time_bound(options[name])
                for name in ("since", "until")
                if options[name]
            }
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        events = audit_event_list(actor=options["actor"], **bounds)
        for line in export_lines(events.iterator(chunk_size=2000), options["format"]):
            self.stdout.write(line, ending="")

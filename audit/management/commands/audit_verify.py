"""``manage.py audit_verify``: walk the audit trail's hash chain."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verify
from audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Check every audit event's hash and its link to the event before it; "
        "exit non-zero at the first broken link."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = chain_verify(AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000))
        if not report.intact:
            raise CommandError(
                f"chain broken at {report.broken} ({report.count} events before it are intact)"
            )
        head = f"; head #{report.head_sequence} {report.head_hash}" if report.count else ""
        self.stdout.write(self.style.SUCCESS(f"{report.count} events, chain intact{head}"))

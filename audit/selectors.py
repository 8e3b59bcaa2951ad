"""Reading the audit trail."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import AuditEvent


def audit_event_list(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    actor: str | None = None,
) -> QuerySet[AuditEvent]:
    """Events in chain order; ``since`` inclusive, ``until`` exclusive, ``actor`` by name."""
    events = AuditEvent.objects.order_by("sequence")
    if since is not None:
        events = events.filter(time__gte=since)
    if until is not None:
        events = events.filter(time__lt=until)
    if actor:
        events = events.filter(actor_name=actor)
    return events


def parse_time_bound(value: str) -> dt.datetime:
    """An ISO 8601 date-time, or a date (its midnight); UTC unless it says otherwise."""
    parsed: dt.datetime | None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = dt.datetime.combine(day, dt.time()) if day else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def audit_event_page(
    *,
    events: QuerySet[AuditEvent],
    before: int | None = None,
    size: int = 50,
) -> tuple[list[AuditEvent], int | None]:
    """The ``size`` newest events with a sequence below ``before``, and the next page's bound.

    Keyed on the chain's sequence, so deep pages cost what the first does.
    """
    events = events.order_by("-sequence")
    if before is not None:
        events = events.filter(sequence__lt=before)
    rows = list(events[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].sequence if more else None)

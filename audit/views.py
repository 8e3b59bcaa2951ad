"""The audit trail in the console: ``/console/audit/`` (read-only) and ``/audit/export``."""

from __future__ import annotations

import json

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.export import CONTENT_TYPES, LINES_PER_CHUNK, export_lines, export_stream
from audit.models import AuditEvent
from audit.selectors import audit_event_list, audit_event_page, parse_time_bound
from keys.access import Access
from keys.console import console_view, visible_object


@require_GET
@staff_member_required
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream the events matching ``since``, ``until`` and ``actor`` as ``format``.

    For staff who may view audit events; ``since`` is inclusive, ``until``
    exclusive (ISO 8601 dates or date-times).
    """
    if not request.user.has_perm("audit.view_auditevent"):
        raise PermissionDenied
    fmt = request.GET.get("format", "jsonl")
    if fmt not in CONTENT_TYPES:
        return HttpResponseBadRequest(f"format must be one of {', '.join(CONTENT_TYPES)}")
    try:
        bounds = {
            name: parse_time_bound(request.GET[name])
            for name in ("since", "until")
            if request.GET.get(name)
        }
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    events = audit_event_list(actor=request.GET.get("actor") or None, **bounds)
    lines = export_lines(events.iterator(chunk_size=LINES_PER_CHUNK), fmt)
    response = StreamingHttpResponse(
        export_stream(request, lines), content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response


@console_view(AuditEvent)
def audit_trail(request: HttpRequest, access: Access) -> HttpResponse:
    """The newest events first, narrowed by actor, action or kind of object."""
    events = access.scope(AuditEvent.objects.all())
    filters = {name: request.GET.get(name, "").strip() for name in ("actor", "action", "type")}
    if filters["actor"]:
        events = events.filter(actor_name=filters["actor"])
    if filters["action"]:
        events = events.filter(action=filters["action"])
    if filters["type"]:
        events = events.filter(object_type=filters["type"])
    try:
        before = int(request.GET["before"]) if request.GET.get("before") else None
    except ValueError:
        raise Http404("no such page") from None
    rows, next_before = audit_event_page(events=events, before=before)
    query = request.GET.copy()
    query["before"] = str(next_before)
    return render(
        request,
        "console/audit_trail.html",
        {
            "title": "Audit trail",
            "events": rows,
            "filters": filters,
            "next_url": f"?{query.urlencode()}" if next_before else None,
            "can_export": request.user.is_staff and request.user.has_perm("audit.view_auditevent"),
        },
    )


@console_view(AuditEvent)
def audit_event_detail(request: HttpRequest, access: Access, sequence: int) -> HttpResponse:
    event = visible_object(access, AuditEvent.objects.all(), sequence=sequence)
    return render(
        request,
        "console/audit_event.html",
        {
            "title": f"Audit event {event.sequence}",
            "event": event,
            "before": _pretty(event.before),
            "after": _pretty(event.after),
        },
    )


def _pretty(value: object) -> str:
    return "—" if value is None else json.dumps(value, indent=2, sort_keys=True)

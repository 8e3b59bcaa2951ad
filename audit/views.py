"""The console's export of the audit trail: ``/audit/export``."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.export import CONTENT_TYPES, LINES_PER_CHUNK, export_lines, export_stream
from audit.selectors import audit_event_list, parse_time_bound


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

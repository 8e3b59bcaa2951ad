"""The console's export of the audit trail: ``/audit/export``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from functools import partial

from asgiref.sync import sync_to_async
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.export import CONTENT_TYPES, export_lines
from audit.selectors import audit_event_list, parse_time_bound

LINES_PER_CHUNK = 500


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
        _stream(request, lines), content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response


def _stream(request: HttpRequest, lines: Iterator[str]) -> Iterator[str] | AsyncIterator[str]:
    chunks = iter(partial(_take, lines), "")
    if isinstance(request, ASGIRequest):
        # Served by the ASGI handler, a synchronous iterator would be read
        # whole into memory before the first byte goes out.
        return _async_chunks(chunks)
    return chunks


def _take(lines: Iterator[str]) -> str:
    return "".join(itertools.islice(lines, LINES_PER_CHUNK))


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    # The database cursor stays in the request's one synchronous thread.
    read = sync_to_async(partial(next, chunks, ""), thread_sensitive=True)
    while chunk := await read():
        yield chunk

"""The audit trail over the API: read-only lists, details and a streaming export."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request

from audit.api.filters import AuditEventFilter
from audit.api.serializers import AuditEventSerializer, ExportQuerySerializer
from audit.export import CONTENT_TYPES, LINES_PER_CHUNK, export_lines, export_stream
from audit.models import AuditEvent
from keys.api.pagination import CursorPages
from keys.api.viewsets import ReadOnlyScopedViewSet


class AuditTrailPagination(CursorPages):
    ordering = "-sequence"


class AuditEventViewSet(ReadOnlyScopedViewSet):
    """Audit events, newest first (admins, viewers and auditors)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    pagination_class = AuditTrailPagination
    ordering_fields = ("sequence",)

    @extend_schema(
        filters=True,
        parameters=[ExportQuerySerializer],
        responses={
            (200, CONTENT_TYPES["jsonl"]): OpenApiResponse(OpenApiTypes.STR),
            (200, CONTENT_TYPES["csv"]): OpenApiResponse(OpenApiTypes.STR),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request: Request) -> StreamingHttpResponse:
        """The events matching the filters, in chain order, as JSON Lines or CSV (streamed)."""
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["output"]
        events = self.filter_queryset(self.get_queryset()).order_by("sequence")
        lines = export_lines(events.iterator(chunk_size=LINES_PER_CHUNK), fmt)
        response = StreamingHttpResponse(
            export_stream(request._request, lines),
            content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
        return response

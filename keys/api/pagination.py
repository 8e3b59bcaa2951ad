"""How lists of the API are paged (the request log and the audit trail use cursors instead)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, LimitOffsetPagination


class LimitOffsetPages(LimitOffsetPagination):
    """``limit`` (at most 500) and ``offset``, with the total ``count``."""

    default_limit = 50
    max_limit = 500


class CursorPages(CursorPagination):
    """Cursor pages (``page_size`` at most 500), stable and cheap however long the table.

    No total count: counting millions of rows on every page costs more than
    the page. Subclasses set ``ordering``, ending in a unique field.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

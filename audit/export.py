"""The audit trail as JSON Lines or CSV, one event at a time.

Both formats carry every field, hashes included, so that an export can be
checked against the chain outside the gateway.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest

from audit.chain import CONTENT_FIELDS
from audit.models import AuditEvent

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
COLUMNS = (*CONTENT_FIELDS, "previous_hash", "hash")
LINES_PER_CHUNK = 500


def export_record(event: AuditEvent) -> dict[str, Any]:
    record = {name: getattr(event, name) for name in COLUMNS}
    record["time"] = event.time.isoformat()
    return record


def export_lines(events: Iterable[AuditEvent], fmt: str) -> Iterator[str]:
    """Lines of ``events`` in format ``fmt`` (``jsonl`` or ``csv``), each ending in a newline."""
    if fmt == "jsonl":
        for event in events:
            yield json.dumps(export_record(event), ensure_ascii=False) + "\n"
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        yield _csv_line(buffer, writer, COLUMNS)
        for event in events:
            record = export_record(event)
            for name in ("before", "after"):
                if record[name] is not None:
                    record[name] = json.dumps(record[name], ensure_ascii=False, sort_keys=True)
            yield _csv_line(buffer, writer, [_csv_value(record[name]) for name in COLUMNS])
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(CONTENT_TYPES)}")


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def _csv_line(buffer: io.StringIO, writer: Any, row: Iterable[Any]) -> str:
    buffer.seek(0)
    buffer.truncate()
    writer.writerow(row)
    return buffer.getvalue()


def export_stream(request: HttpRequest, lines: Iterator[str]) -> Iterator[str] | AsyncIterator[str]:
    """``lines`` in chunks, as a streaming response of ``request``'s handler wants them."""
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

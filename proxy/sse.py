"""Server-sent events read incrementally, for decoding providers' streams.

Bytes arrive cut anywhere; :class:`SSEParser` keeps the incomplete tail and
hands out complete events. Lines may end in LF, CRLF or CR (the SSE grammar
allows all three); comments (lines starting with ``:``) are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


@dataclass(slots=True)
class Event:
    """One server-sent event: its ``event:`` name (empty if none) and ``data:``."""

    event: str
    data: bytes


class SSEParser:
    """Splits a byte stream into :class:`Event` objects as they complete."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[Event]:
        data = self._pending + chunk if self._pending else chunk
        events: list[Event] = []
        start = 0
        for match in _EVENT_END.finditer(data):
            event = _parse(data[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._pending = data[start:]
        return events

    def finish(self) -> list[Event]:
        """The last event, when the stream ended without its blank line."""
        rest, self._pending = self._pending, b""
        event = _parse(rest) if rest.strip() else None
        return [event] if event is not None else []


def _parse(block: bytes) -> Event | None:
    name = ""
    data: list[bytes] = []
    for line in _LINE_END.split(block):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and not name:
        return None
    return Event(name, b"\n".join(data))


def encode(data: bytes, event: str | None = None) -> bytes:
    """One event as bytes on the wire."""
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"

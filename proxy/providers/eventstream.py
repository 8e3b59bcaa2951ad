"""Decoding AWS event streams (``application/vnd.amazon.eventstream``).

Bedrock's streamed answers are a sequence of binary messages, each::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers: name length (u8), name, value type (u8), value
    payload
    message CRC32 (u32, over everything before it)

all integers big-endian. :class:`EventStreamDecoder` is fed bytes cut
anywhere and returns each message once it is complete and both checksums
hold; anything else raises :class:`EventStreamError`.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PRELUDE_LENGTH = 12
CRC_LENGTH = 4
MINIMUM_LENGTH = PRELUDE_LENGTH + CRC_LENGTH
# AWS's own limits for one message and for its headers.
MAXIMUM_LENGTH = 16 * 1024 * 1024
MAXIMUM_HEADERS_LENGTH = 128 * 1024

# Header value types, by their wire code.
BOOL_TRUE, BOOL_FALSE, BYTE, SHORT, INTEGER, LONG, BYTES, STRING, TIMESTAMP, UUID = range(10)
_FIXED = {BYTE: ">b", SHORT: ">h", INTEGER: ">i", LONG: ">q"}


class EventStreamError(ValueError):
    """Bytes that are not a valid event stream."""


@dataclass(frozen=True, slots=True)
class Message:
    """One event-stream message: its headers by name, and its payload."""

    headers: dict[str, Any]
    payload: bytes


def parse_headers(data: bytes) -> dict[str, Any]:
    """The headers section of a message as a dict (strings, ints, bools, bytes...)."""
    headers: dict[str, Any] = {}
    position = 0
    end = len(data)
    try:
        while position < end:
            name_length = data[position]
            position += 1
            name = data[position : position + name_length].decode("utf-8")
            position += name_length
            kind = data[position]
            position += 1
            value: Any
            if kind == BOOL_TRUE:
                value = True
            elif kind == BOOL_FALSE:
                value = False
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                size = struct.calcsize(fmt)
                (value,) = struct.unpack_from(fmt, data, position)
                position += size
            elif kind in (BYTES, STRING):
                (length,) = struct.unpack_from(">H", data, position)
                position += 2
                raw = data[position : position + length]
                if len(raw) != length:
                    raise EventStreamError("a header value is cut short")
                position += length
                value = raw.decode("utf-8") if kind == STRING else raw
            elif kind == TIMESTAMP:
                (millis,) = struct.unpack_from(">q", data, position)
                position += 8
                value = datetime.fromtimestamp(millis / 1000, tz=UTC)
            elif kind == UUID:
                raw = data[position : position + 16]
                if len(raw) != 16:
                    raise EventStreamError("a header value is cut short")
                position += 16
                value = uuid.UUID(bytes=raw)
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from None
    if position != end:
        raise EventStreamError("headers overrun their declared length")
    return headers


class EventStreamDecoder:
    """Splits a byte stream into checked :class:`Message` s, incrementally."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by ``data``; a partial one waits for more bytes."""
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= PRELUDE_LENGTH:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude checksum mismatch")
            if not MINIMUM_LENGTH <= total <= MAXIMUM_LENGTH:
                raise EventStreamError(f"message length {total} out of bounds")
            if headers_length > min(MAXIMUM_HEADERS_LENGTH, total - MINIMUM_LENGTH):
                raise EventStreamError(f"headers length {headers_length} out of bounds")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - CRC_LENGTH)
            if zlib.crc32(frame[: total - CRC_LENGTH]) != message_crc:
                raise EventStreamError("message checksum mismatch")
            headers_end = PRELUDE_LENGTH + headers_length
            messages.append(
                Message(
                    headers=parse_headers(frame[PRELUDE_LENGTH:headers_end]),
                    payload=frame[headers_end : total - CRC_LENGTH],
                )
            )
        return messages

    def finish(self) -> None:
        """Called at the end of the stream: raises if a message was left incomplete."""
        if self._buffer:
            left = len(self._buffer)
            self._buffer.clear()
            raise EventStreamError(f"the stream ended inside a message ({left} bytes left)")

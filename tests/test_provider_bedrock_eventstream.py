"""The AWS event-stream decoder: checksums, every header type, arbitrary cuts."""

from __future__ import annotations

import struct
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer

from proxy.mock_provider.bedrock import event, frame
from proxy.providers.eventstream import EventStreamDecoder, EventStreamError


def _raw_message(headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, kind: int, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([kind]) + value


def _all_header_types() -> bytes:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return b"".join(
        [
            _header("yes", 0, b""),
            _header("no", 1, b""),
            _header("byte", 2, struct.pack(">b", -5)),
            _header("short", 3, struct.pack(">h", -300)),
            _header("int", 4, struct.pack(">i", 70000)),
            _header("long", 5, struct.pack(">q", 2**40)),
            _header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
            _header("string", 7, struct.pack(">H", 6) + "héllo".encode()),
            _header("time", 8, struct.pack(">q", int(moment.timestamp() * 1000))),
            _header("uuid", 9, uuid.UUID(int=42).bytes),
        ]
    )


def test_it_reads_every_header_value_type() -> None:
    [message] = EventStreamDecoder().feed(_raw_message(_all_header_types(), b"payload"))
    assert message.payload == b"payload"
    assert message.headers == {
        "yes": True,
        "no": False,
        "byte": -5,
        "short": -300,
        "int": 70000,
        "long": 2**40,
        "bytes": b"\x00\x01\x02",
        "string": "héllo",
        "time": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "uuid": uuid.UUID(int=42),
    }


def test_it_agrees_with_botocore_on_the_same_bytes() -> None:
    data = _raw_message(_all_header_types(), b"{}") + event("messageStop", {"stopReason": "x"})
    ours = EventStreamDecoder().feed(data)
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    theirs = list(buffer)
    assert [m.payload for m in ours] == [m.payload for m in theirs]
    assert ours[1].headers == theirs[1].headers
    assert ours[0].headers["string"] == theirs[0].headers["string"]


@pytest.mark.parametrize("cut", [1, 2, 5, 11, 12, 13, 1000])
def test_messages_come_out_whole_whatever_the_cuts(cut: int) -> None:
    messages = [
        frame({":event-type": "a"}, b""),
        frame({":event-type": "b", ":message-type": "event"}, "ünïcode".encode() * 40),
        frame({}, b"x"),
    ]
    data = b"".join(messages)
    decoder = EventStreamDecoder()
    out = []
    for start in range(0, len(data), cut):
        out += decoder.feed(data[start : start + cut])
    decoder.finish()
    assert [m.headers.get(":event-type") for m in out] == ["a", "b", None]
    assert out[1].payload == "ünïcode".encode() * 40


def test_a_message_is_held_back_until_its_last_byte() -> None:
    data = frame({":event-type": "a"}, b"{}")
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-1]) == []
    assert len(decoder.feed(data[-1:])) == 1


@pytest.mark.parametrize(
    ("position", "words"),
    [(2, "prelude checksum"), (9, "prelude checksum"), (20, "message checksum"), (-1, "message")],
)
def test_a_flipped_bit_anywhere_is_detected(position: int, words: str) -> None:
    data = bytearray(frame({":event-type": "contentBlockDelta"}, b'{"delta":{"text":"hi"}}'))
    data[position] ^= 0x10
    with pytest.raises(EventStreamError, match=words):
        EventStreamDecoder().feed(bytes(data))


def test_lengths_out_of_bounds_are_refused_before_waiting_for_them() -> None:
    prelude = struct.pack(">II", 64 * 1024 * 1024, 0)
    with pytest.raises(EventStreamError, match="out of bounds"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_headers_overrunning_their_length_are_refused() -> None:
    bad = bytes([5]) + b"abc"  # declares a 5-byte name, has 3 bytes
    with pytest.raises(EventStreamError, match="headers"):
        EventStreamDecoder().feed(_raw_message(bad, b""))


def test_an_unknown_header_type_is_refused() -> None:
    with pytest.raises(EventStreamError, match="unknown header value type 12"):
        EventStreamDecoder().feed(_raw_message(_header("x", 12, b""), b""))


def test_a_stream_ending_inside_a_message_is_refused_at_the_end() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(frame({":event-type": "a"}, b"{}")[:10])
    with pytest.raises(EventStreamError, match="inside a message"):
        decoder.finish()

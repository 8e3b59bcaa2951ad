"""Bedrock's event-stream decoder (``proxy.providers.eventstream``): any bytes
give messages or an ``EventStreamError``, never another exception, and bytes
cut anywhere decode as the same bytes in one piece."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from proxy.providers.eventstream import EventStreamDecoder, EventStreamError


def decoded(pieces: list[bytes]) -> tuple[list, str | None]:
    decoder = EventStreamDecoder()
    messages = []
    try:
        for piece in pieces:
            messages += decoder.feed(piece)
        decoder.finish()
    except EventStreamError:
        return messages, "error"
    return messages, None


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    stream = data[2:]
    cut = (data[0] * 256 + data[1]) % (len(stream) + 1)
    whole_messages, whole_error = decoded([stream])
    messages, error = decoded([stream[:cut], stream[cut:]])
    assert error == whole_error, (stream, cut)
    if whole_error is None:
        assert messages == whole_messages, (stream, cut)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

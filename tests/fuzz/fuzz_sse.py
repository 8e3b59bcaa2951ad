"""The SSE parser (``proxy.sse``): bytes cut anywhere give the same events as
the same bytes in one piece, and nothing raises."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from proxy.sse import SSEParser


def events_of(pieces: list[bytes]) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.finish()
    return [(event.event, event.data) for event in events]


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cut = data[0] * 256 + data[1]
    stream = data[2:]
    cut %= len(stream) + 1
    whole = events_of([stream])
    assert events_of([stream[:cut], stream[cut:]]) == whole, (stream, cut)
    assert events_of([bytes([b]) for b in stream]) == whole, stream


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

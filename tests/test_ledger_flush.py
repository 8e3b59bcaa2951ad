"""The ledger's flush writes a backlog in chunks: a chunk written stays written
when a later one fails, and what failed is kept, in order, for the next try."""

from __future__ import annotations

import asyncio

from governance.ledger import FLUSH_CHUNK, Ledger


class FailingOnce:
    """A sink that refuses its ``fail_at``-th write once (Redis gone for a moment)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.writes = 0
        self.stored: list[int] = []

    async def write(self, entries):
        self.writes += 1
        if self.writes == self.fail_at:
            raise ConnectionError("connection reset by peer")
        self.stored.extend(entry["n"] for entry in entries)


def test_a_backlog_is_written_in_chunks_and_a_failed_chunk_is_kept_in_order():
    ledger = Ledger()
    sink = FailingOnce(fail_at=2)
    ledger._sink = sink
    backlog = 2 * FLUSH_CHUNK + 10
    for n in range(backlog):
        ledger.record({"n": n})

    assert asyncio.run(ledger.flush()) is False
    # The first chunk is stored and not kept again; the rest waits, in order.
    assert sink.stored == list(range(FLUSH_CHUNK))
    assert [entry["n"] for entry in ledger.buffer] == list(range(FLUSH_CHUNK, backlog))

    ledger.record({"n": backlog})  # a request finishing meanwhile
    assert asyncio.run(ledger.flush()) is True
    assert sink.stored == list(range(backlog + 1))
    assert ledger.buffer == []
    assert sink.writes == 4  # the first chunk, the refused one, then 1,011 records in two

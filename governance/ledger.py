"""The usage ledger's write path, off the request path.

The data plane hands each finished request to :data:`ledger`, which keeps a
small in-process buffer and flushes it in batches: into the database
directly in embedded mode, into a Redis stream in cluster mode (drained into
the database by the Celery worker, ``governance.tasks.usage_drain``). A
graceful shutdown flushes the buffer; a crash loses at most one flush
interval of records (``GATEWAY_LEDGER_FLUSH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Protocol

import orjson
from channels.db import database_sync_to_async
from django.conf import settings

from gateway_project.redis_client import redis_key

logger = logging.getLogger(__name__)

STREAM = "usage"
# Beyond this many unflushed records (the sink has been down for a while) the
# oldest are dropped and counted, rather than growing without bound.
MAX_BUFFERED = 200_000


def stream_key() -> str:
    return redis_key(STREAM)


def insert_records(entries: list[dict[str, Any]]) -> int:
    """Store ledger entries; entries already stored (same request id) are skipped."""
    from governance.models import RequestRecord

    records = [
        RequestRecord(**{**entry, "time": dt.datetime.fromtimestamp(entry["time"], dt.UTC)})
        for entry in entries
    ]
    RequestRecord.objects.bulk_create(records, ignore_conflicts=True, batch_size=1000)
    return len(records)


class Sink(Protocol):
    async def write(self, entries: list[dict[str, Any]]) -> None: ...


class DatabaseSink:
    """Embedded mode: batched inserts."""

    async def write(self, entries: list[dict[str, Any]]) -> None:
        await database_sync_to_async(insert_records)(entries)


class RedisStreamSink:
    """Cluster mode: one pipeline of XADDs per flush."""

    def __init__(self) -> None:
        from gateway_project.redis_client import async_client

        self.client = async_client()

    async def write(self, entries: list[dict[str, Any]]) -> None:
        key = stream_key()
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(key, {"r": orjson.dumps(entry)})
            await pipe.execute()


class Ledger:
    """This process's buffer of finished requests."""

    def __init__(self) -> None:
        self.buffer: list[dict[str, Any]] = []
        self.dropped = 0
        self._sink: Sink | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def record(self, entry: dict[str, Any]) -> None:
        self.buffer.append(entry)
        if len(self.buffer) >= settings.GATEWAY_LEDGER_BATCH_SIZE and self._wakeup is not None:
            self._wakeup.set()

    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = RedisStreamSink() if settings.REDIS_URL else DatabaseSink()
        return self._sink

    def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="ledger-flush")

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            try:
                await asyncio.wait_for(
                    self._wakeup.wait(), timeout=settings.GATEWAY_LEDGER_FLUSH_SECONDS
                )
            except TimeoutError:
                pass
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write what is buffered; on failure keep it for the next attempt."""
        if not self.buffer:
            return True
        batch, self.buffer = self.buffer, []
        try:
            await self.sink().write(batch)
        except Exception:
            logger.warning(
                "could not write %d usage records; will retry", len(batch), exc_info=True
            )
            self.buffer[:0] = batch
            overflow = len(self.buffer) - MAX_BUFFERED
            if overflow > 0:
                del self.buffer[:overflow]
                self.dropped += overflow
                logger.error("usage buffer full: %d records dropped", overflow)
            return False
        return True

    async def stop(self, attempts: int = 5) -> None:
        """Stop the periodic flush and write everything still buffered."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for attempt in range(attempts):
            if await self.flush():
                return
            await asyncio.sleep(0.2 * (attempt + 1))
        if self.buffer:
            logger.error("%d usage records could not be written at shutdown", len(self.buffer))


ledger = Ledger()

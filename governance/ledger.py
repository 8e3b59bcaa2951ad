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
import concurrent.futures
import datetime as dt
import functools
import logging
import zlib
from typing import Any, Protocol

import orjson
from django.db import connection, transaction

from gateway_project.fast_settings import settings
from gateway_project.redis_client import redis_key

logger = logging.getLogger(__name__)

STREAM = "usage"
# Batches waiting for one live-traffic viewer; a viewer that falls further
# behind misses batches rather than holding memory (``governance.live``).
LISTENER_BACKLOG = 100
# Beyond this many unflushed records (the sink has been down for a while) the
# oldest are dropped and counted, rather than growing without bound.
MAX_BUFFERED = 200_000
# Records per write to the sink (one INSERT's executemany, or one write of XADDs).
FLUSH_CHUNK = 1000


def stream_key() -> str:
    return redis_key(STREAM)


# An advisory lock key: every transaction that writes request records holds it
# shared; the rollup job takes it exclusively for an instant to fix its
# frontier (``governance.rollups.records_frontier``).
RECORD_WRITERS_LOCK = zlib.crc32(b"gateway-ledger:record-writers")


def record_writers_lock(cursor: Any) -> None:
    """Take the writers' shared lock for the current transaction (PostgreSQL).

    Called first in every transaction that inserts request records, before
    any id is drawn from the sequence: while the rollup job holds the lock
    exclusively no such transaction is open, so every id below the highest
    visible one is either committed or will never exist. SQLite has one
    writer at a time, committing in id order, and needs nothing.
    """
    if connection.vendor == "postgresql":
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [RECORD_WRITERS_LOCK])


@functools.cache
def _insert_statement(
    vendor: str,
) -> tuple[str, tuple[str, ...], dict[str, Any], tuple[Any, ...]]:
    """One INSERT for a whole batch, skipping request ids already stored.

    Plain ``executemany`` rather than ``bulk_create``: building a model
    instance per record costs more than the insert itself at thousands of
    records a second. JSON fields are the ones whose values need the
    database's own adaptation (returned last).
    """
    from governance.models import RequestRecord

    fields = [f for f in RequestRecord._meta.concrete_fields if not f.primary_key]
    columns = tuple(f.column for f in fields)
    defaults = {f.attname: f.get_default() for f in fields}
    placeholders = ", ".join(["%s"] * len(columns))
    table = RequestRecord._meta.db_table
    if vendor == "sqlite":
        sql = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    else:
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "  # noqa: S608
            "ON CONFLICT (request_id) DO NOTHING"
        )
    json_fields = tuple(f for f in fields if f.get_internal_type() == "JSONField")
    return sql, tuple(f.attname for f in fields), defaults, json_fields


def _time_adapter(vendor: str) -> Any:
    """The request's Unix time as the database driver takes a datetime field.

    SQLite's is Django's own (naive UTC, as text) without its checks, which
    were a third of the cost of preparing a row; psycopg adapts an aware
    datetime itself.
    """
    if vendor == "sqlite":
        return lambda moment: str(dt.datetime.fromtimestamp(moment, dt.UTC).replace(tzinfo=None))
    adapt = connection.ops.adapt_datetimefield_value
    return lambda moment: adapt(dt.datetime.fromtimestamp(moment, dt.UTC))


def _json_adapter(field: Any) -> Any:
    """``field``'s value as the driver takes it; its default (most records) adapted once."""
    default = field.get_default()
    adapted = field.get_db_prep_save(default, connection)
    kind = type(default)
    return lambda value: (
        adapted
        if type(value) is kind and value == default
        else field.get_db_prep_save(value, connection)
    )


def insert_records(entries: list[dict[str, Any]]) -> int:
    """Store ledger entries; entries already stored (same request id) are skipped."""
    if not entries:
        return 0
    sql, names, defaults, json_fields = _insert_statement(connection.vendor)
    adapters = {field.attname: _json_adapter(field) for field in json_fields}
    adapters["time"] = _time_adapter(connection.vendor)
    columns = [(name, defaults[name], adapters.get(name)) for name in names]
    rows = [
        [
            entry.get(name, default) if adapt is None else adapt(entry.get(name, default))
            for name, default, adapt in columns
        ]
        for entry in entries
    ]
    # One transaction per batch: per-row commits cost more than the inserts.
    with transaction.atomic(), connection.cursor() as cursor:
        record_writers_lock(cursor)
        cursor.executemany(sql, rows)
    return len(rows)


class Sink(Protocol):
    async def write(self, entries: list[dict[str, Any]]) -> None: ...


def _insert_keeping_connection(entries: list[dict[str, Any]]) -> int:
    try:
        return insert_records(entries)
    except Exception:
        connection.close()  # the next batch opens a fresh one
        raise


class DatabaseSink:
    """Embedded mode: batched inserts, from one thread that keeps its connection.

    Opening and closing a connection for every batch (as Django does around
    each call from async code) costs more than the inserts: closing SQLite's
    last connection checkpoints its write-ahead log.
    """

    def __init__(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ledger-writer"
        )

    async def write(self, entries: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, _insert_keeping_connection, entries)


class RedisStreamSink:
    """Cluster mode: one write of ``XADD``s per chunk of the flush.

    On a pipelined connection of its own (``gateway_project.fast_redis``):
    hiredis packs the batch in C, where redis-py's pipeline held the event
    loop about 10 ms for 500 records, and admissions do not queue behind it.
    """

    def __init__(self) -> None:
        from gateway_project.fast_redis import PipelinedRedis

        # Bounded: a Redis server that stopped answering must not hold the
        # flush (the batch stays buffered and is tried again).
        self.client = PipelinedRedis(settings.REDIS_URL, timeout=5)

    async def write(self, entries: list[dict[str, Any]]) -> None:
        key = stream_key()
        replies = await self.client.execute(
            *[("XADD", key, "*", "r", orjson.dumps(entry)) for entry in entries]
        )
        for reply in replies:
            if isinstance(reply, Exception):
                # The whole chunk is written again: the drain skips request
                # ids already stored, so the entries that did land are not doubled.
                raise reply


class Ledger:
    """This process's buffer of finished requests."""

    def __init__(self) -> None:
        self.buffer: list[dict[str, Any]] = []
        self.dropped = 0
        self._failing = False
        self._sink: Sink | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: set[asyncio.Queue[list[dict[str, Any]]]] = set()

    def subscribe(self) -> asyncio.Queue[list[dict[str, Any]]]:
        """A queue receiving every batch this process writes from now on.

        Fed after each flush, off the request path: the console's live view
        in embedded mode. Call :meth:`unsubscribe` when done.
        """
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(LISTENER_BACKLOG)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        self._listeners.discard(queue)

    def _publish(self, batch: list[dict[str, Any]]) -> None:
        for queue in self._listeners:
            if not queue.full():
                queue.put_nowait(batch)

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
        """Write what is buffered, a chunk at a time; on failure keep what is left.

        Chunks keep each write short, so that after an outage a backlog of
        many thousands of records drains within the sink's timeout, and a
        chunk written stays written when a later one fails.
        """
        if not self.buffer:
            return True
        batch, self.buffer = self.buffer, []
        written = 0
        try:
            while written < len(batch):
                chunk = batch[written : written + FLUSH_CHUNK]
                await self.sink().write(chunk)
                written += len(chunk)
                self._publish(chunk)
        except Exception:
            # The traceback once per outage, not at every flush interval.
            logger.warning(
                "could not write %d usage records; will retry",
                len(batch) - written,
                exc_info=not self._failing,
            )
            self._failing = True
            self.buffer[:0] = batch[written:]
            overflow = len(self.buffer) - MAX_BUFFERED
            if overflow > 0:
                del self.buffer[:overflow]
                self.dropped += overflow
                logger.error("usage buffer full: %d records dropped", overflow)
            return False
        if self._failing:
            logger.warning("usage records are written again")
            self._failing = False
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

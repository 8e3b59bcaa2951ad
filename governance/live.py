"""The console's live traffic feed: a WebSocket of finished requests.

It adds nothing to the inference path. In cluster mode it reads the Redis
usage stream the ledger already writes (``XREAD`` from the last id seen, so
every web process's records arrive, whichever process the viewer is on);
in embedded mode it listens to this process's ledger, which hands each
written batch to its subscribers after the flush. The socket is
authenticated by the Django session and shows what ``keys.access`` lets the
operator read of the request log (team managers: their teams).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from governance.ledger import ledger, stream_key
from governance.models import RequestRecord
from keys.access import Access, operator_access

# The fields of a ledger entry a viewer sees.
FIELDS = (
    "request_id",
    "time",
    "status",
    "error_code",
    "requested_model",
    "served_model",
    "provider",
    "key_id",
    "team_id",
    "input_tokens",
    "output_tokens",
    "cost_micros",
    "latency_ms",
    "stream",
)
# A WebSocket close code in the application range: not allowed to read the log.
CLOSE_FORBIDDEN = 4403
STREAM_BLOCK_MS = 5000
STREAM_BATCH = 500


async def local_batches() -> AsyncIterator[list[dict[str, Any]]]:
    """Embedded mode: the batches this process's ledger writes."""
    queue = ledger.subscribe()
    try:
        while True:
            yield await queue.get()
    finally:
        ledger.unsubscribe(queue)


async def stream_batches() -> AsyncIterator[list[dict[str, Any]]]:
    """Cluster mode: entries added to the usage stream from now on, by any process."""
    from gateway_project.redis_client import async_client

    client = async_client()
    key = stream_key()
    last = "$"
    try:
        while True:
            response = await client.xread({key: last}, block=STREAM_BLOCK_MS, count=STREAM_BATCH)
            batch = []
            for _, messages in response or ():
                for message_id, fields in messages:
                    last = message_id
                    with contextlib.suppress(KeyError, orjson.JSONDecodeError):
                        batch.append(orjson.loads(fields[b"r"]))
            if batch:
                yield batch
    finally:
        # The pool was made for this viewer alone: close its connections too.
        await client.aclose()
        await client.connection_pool.disconnect()


def visible(access: Access, entry: dict[str, Any]) -> bool:
    """Whether ``access`` may read this request (the rule of ``Access.scope``)."""
    return access.sees_everything or entry.get("team_id") in access.managed_team_ids


class LiveTrafficConsumer(AsyncJsonWebsocketConsumer):
    """Sends ``{"records": [...]}`` for each batch of finished requests the operator may see."""

    access: Access
    pump: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.access = await database_sync_to_async(operator_access)(self.scope.get("user"))
        if not self.access.can_view(RequestRecord):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        self.pump = asyncio.create_task(self._forward(), name="live-traffic")

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)

    async def _forward(self) -> None:
        batches = stream_batches() if settings.REDIS_URL else local_batches()
        async for batch in batches:
            records = [
                {name: entry.get(name) for name in FIELDS}
                for entry in batch
                if visible(self.access, entry)
            ]
            if records:
                await self.send_json({"records": records})

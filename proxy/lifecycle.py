"""Start-up and shutdown of a gateway process (ASGI lifespan)."""

from __future__ import annotations

import logging
from typing import Any

from governance.ledger import ledger
from proxy import upstream
from proxy.snapshot import store

logger = logging.getLogger(__name__)


async def startup() -> None:
    try:
        await store.load()
    except Exception:
        # The database may be late; the first request (or the poll) retries.
        logger.warning("configuration snapshot not loaded at start-up", exc_info=True)
    store.start()
    ledger.start()


async def shutdown() -> None:
    await ledger.stop()
    await store.stop()
    await upstream.close()


async def lifespan(receive: Any, send: Any) -> None:
    """Serve the ASGI lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return

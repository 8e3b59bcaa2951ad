"""Start-up and shutdown of a gateway process (ASGI lifespan)."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from django.conf import settings

from governance.ledger import ledger
from governance.schedule import schedule
from proxy import metrics, tracing, upstream
from proxy.access_log import access_log
from proxy.breaker import breakers
from proxy.snapshot import store

logger = logging.getLogger(__name__)
_background: list[asyncio.Task[None]] = []
SHUTDOWN_TIMEOUT_SECONDS = 20.0
FREEZE_AGAIN_AFTER_SECONDS = 10.0


async def startup() -> None:
    tracing.configure()
    try:
        await store.load()
    except Exception:
        # The database may be late; the first request (or the poll) retries.
        logger.warning("configuration snapshot not loaded at start-up", exc_info=True)
    store.start()
    ledger.start()
    schedule.start()  # embedded mode's periodic jobs (cluster: Celery beat)
    access_log.start()
    await breakers.start()
    if settings.GATEWAY_METRICS_DIR:
        _background.append(asyncio.create_task(metrics.run_writer(), name="metrics-writer"))
    freeze_heap()
    _background.append(asyncio.create_task(_freeze_later(), name="heap-freeze"))


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach.

    Django, the loaded modules and the snapshot are about 125,000 tracked
    objects that live as long as the process; without this, each full
    collection (about two a second under load) walks all of them, 50-150 ms
    with the event loop held. Frozen objects are still freed when their
    last reference goes; only cycles among them would stay, so the heap is
    collected first.
    """
    gc.collect()
    gc.freeze()


async def _freeze_later() -> None:
    # Again once the first requests have imported and cached what they use lazily.
    await asyncio.sleep(FREEZE_AGAIN_AFTER_SECONDS)
    freeze_heap()


async def shutdown() -> None:
    await access_log.stop()
    await schedule.stop()
    await ledger.stop()
    await store.stop()
    await breakers.stop()
    await upstream.close()
    for task in _background:
        task.cancel()
    await asyncio.gather(*_background, return_exceptions=True)
    _background.clear()
    await asyncio.to_thread(tracing.shutdown)
    try:
        metrics.write_own()  # the last totals, for the workers still serving
    except OSError:
        logger.warning("could not write the metrics file", exc_info=True)


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
            try:
                # Bounded: a store that does not answer must not keep the
                # process from exiting (the ledger's own retries fit in this).
                await asyncio.wait_for(shutdown(), timeout=SHUTDOWN_TIMEOUT_SECONDS)
            except Exception:
                logger.exception("shutdown did not complete cleanly")
            await send({"type": "lifespan.shutdown.complete"})
            return

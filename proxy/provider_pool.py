"""Bounded admission per provider: concurrency slots and a wait buffer.

Each process gives every provider ``GATEWAY_INITIAL_POOL_SIZE`` slots (the
seed's ``initialPoolSize``); an upstream attempt holds one from the request
it sends to the last byte it relays. When every slot is taken a request
waits in the provider's buffer, first come first served, for up to
``GATEWAY_QUEUE_TIMEOUT_SECONDS``. With ``GATEWAY_DROP_EXCESS_REQUESTS`` on
(the seed's ``dropExcessRequests``), a request that finds the buffer full
(``GATEWAY_QUEUE_SIZE`` waiting) is refused at once with 503 and
``Retry-After`` instead: a traffic spike is shed at the door rather than
queued until every client times out.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from gateway_project.fast_settings import settings
from proxy.errors import GatewayError
from proxy.metrics import metrics


class Pool:
    """One provider's slots and waiters."""

    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class ProviderPools:
    """This process's pools, by provider name."""

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}

    def _pool(self, provider: str) -> Pool:
        pool = self._pools.get(provider)
        if pool is None:
            pool = self._pools[provider] = Pool()
        return pool

    async def acquire(self, provider: str) -> None:
        """Take a slot of ``provider``'s pool, waiting if need be; raises the 503."""
        pool = self._pool(provider)
        if pool.active < settings.GATEWAY_INITIAL_POOL_SIZE and not pool.waiters:
            pool.active += 1
            return
        if (
            settings.GATEWAY_DROP_EXCESS_REQUESTS
            and len(pool.waiters) >= settings.GATEWAY_QUEUE_SIZE
        ):
            metrics.count("gateway_provider_queue_drops", (provider, "buffer_full"))
            raise overloaded(provider, "its wait buffer is full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        metrics.add("gateway_provider_queue_depth", 1, (provider,))
        started = time.perf_counter()
        try:
            await asyncio.wait_for(waiter, settings.GATEWAY_QUEUE_TIMEOUT_SECONDS)
        except TimeoutError:
            metrics.count("gateway_provider_queue_drops", (provider, "timeout"))
            raise overloaded(provider, "no slot freed in time") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(provider)  # handed a slot just as the caller left
            raise
        finally:
            if waiter in pool.waiters:
                pool.waiters.remove(waiter)
            metrics.add("gateway_provider_queue_depth", -1, (provider,))
            metrics.observe(
                "gateway_provider_queue_wait_seconds", (provider,), time.perf_counter() - started
            )

    def release(self, provider: str) -> None:
        """Give the slot back: to the next waiter, or to the pool."""
        pool = self._pools[provider]
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on, ``active`` unchanged
                return
        pool.active -= 1


def overloaded(provider: str, why: str) -> GatewayError:
    return GatewayError(
        503,
        f"The provider '{provider}' is at capacity ({why}); retry shortly.",
        code="provider_overloaded",
        headers=[(b"retry-after", b"1")],
    )


pools = ProviderPools()

"""Shared Redis clients (cluster mode only) and the gateway's key names."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio

from gateway_project.backend_calls import CountedConnection
from gateway_project.fast_settings import settings

logger = logging.getLogger(__name__)


def redis_key(*parts: str) -> str:
    """A key (or channel) name under the gateway's prefix."""
    return ":".join((settings.GATEWAY_REDIS_PREFIX, *parts))


CONFIG_CHANNEL = "config"


@functools.cache
def sync_client() -> redis.Redis:
    """The process's synchronous client (management plane, Celery)."""
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not set: the gateway runs in embedded mode")
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def async_client(*, timeout: float | None = None, url: str | None = None) -> redis.asyncio.Redis:
    """A new asynchronous client; the data plane keeps one per event loop.

    A request that finds every connection busy waits for one (up to a few
    seconds) instead of failing: bursts beyond the pool queue briefly.
    ``timeout`` bounds each command and connection attempt (the limits
    backend's short one, so that a Redis server that stopped answering
    cannot hold requests); without it only connecting is bounded, as
    subscriptions wait for messages indefinitely. ``url`` defaults to
    ``REDIS_URL``.
    """
    url = url or settings.REDIS_URL
    if not url:
        raise RuntimeError("REDIS_URL is not set: the gateway runs in embedded mode")
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        connection_class=CountedConnection,
        max_connections=settings.GATEWAY_REDIS_MAX_CONNECTIONS,
        timeout=5,  # for a free connection: a burst waits rather than fails
        socket_connect_timeout=5 if timeout is None else timeout,
        socket_timeout=timeout,
    )
    return redis.asyncio.Redis(connection_pool=pool)


async def follow(
    channel: str,
    on_message: Callable[[bytes], Awaitable[None]],
    *,
    on_subscribed: Callable[[redis.asyncio.Redis], Awaitable[None]] | None = None,
    what: str = "notifications",
) -> None:
    """Call ``on_message`` with every message published on ``channel`` (a
    name under the gateway's prefix), for ever: a lost connection is opened
    again a second later. ``on_subscribed`` runs each time the subscription
    is (re)made, to catch up on what was missed."""
    while True:
        client = async_client()
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(redis_key(channel))
                if on_subscribed is not None:
                    await on_subscribed(client)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("%s lost; listening again", what, exc_info=True)
            await asyncio.sleep(1.0)
        finally:
            await client.aclose()

"""Shared Redis clients (cluster mode only) and the gateway's key names."""

from __future__ import annotations

import functools

import redis
import redis.asyncio
from django.conf import settings


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


def async_client() -> redis.asyncio.Redis:
    """A new asynchronous client; the data plane keeps one per event loop.

    A request that finds every connection busy waits for one (up to a few
    seconds) instead of failing: bursts beyond the pool queue briefly.
    """
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not set: the gateway runs in embedded mode")
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.GATEWAY_REDIS_MAX_CONNECTIONS,
        timeout=5,
        socket_connect_timeout=5,
    )
    return redis.asyncio.Redis(connection_pool=pool)

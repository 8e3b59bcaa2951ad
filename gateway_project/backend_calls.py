"""Round trips to Redis and queries to the database, counted by what caused them.

The data plane promises no database query per request and at most one Redis
round trip before the upstream call and one after. These counts make the
promise observable (``gateway_backend_calls_total{store, origin}`` on
``/metrics``) and testable: ``origin`` is ``request`` while an inference
request is served (and in tasks it starts), ``background`` otherwise
(configuration refresh, ledger flushes, listeners).

A Redis round trip is one write of commands to a connection: a pipeline,
or a Lua script with every key it touches, is one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import redis.asyncio

REQUEST = "request"
BACKGROUND = "background"
ORIGIN: ContextVar[str] = ContextVar("gateway_backend_origin", default=BACKGROUND)
FAMILY = "gateway_backend_calls"
# Label values, in the family's order (store, origin).
_LABELS = {
    (store, origin): (store, origin)
    for store in ("redis", "database")
    for origin in (REQUEST, BACKGROUND)
}


def count(store: str) -> None:
    from proxy.metrics import metrics

    metrics.count(FAMILY, _LABELS[(store, ORIGIN.get())])


class CountedConnection(redis.asyncio.Connection):
    """A Redis connection that counts each round trip it makes.

    The handshake of a new connection (client name, database selection) is
    not counted: it belongs to the pool, not to the request that happened
    to need one more connection.
    """

    _handshake = False

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        self._handshake = True
        try:
            await super().connect_check_health(*args, **kwargs)
        finally:
            self._handshake = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._handshake:
            count("redis")
        await super().send_packed_command(command, check_health)


def count_query(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
) -> Any:
    count("database")
    return execute(sql, params, many, context)


def watch_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: count the new connection's queries."""
    if count_query not in connection.execute_wrappers:
        connection.execute_wrappers.append(count_query)

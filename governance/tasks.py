"""Celery tasks of the ledger: draining the usage stream into the database."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import orjson
import redis
from celery import shared_task
from django.conf import settings
from django.db import transaction

from governance.ledger import insert_records, stream_key

logger = logging.getLogger(__name__)

GROUP = "ledger"


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis, key: str) -> None:
    try:
        client.xgroup_create(key, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _store(client: redis.Redis, key: str, messages: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    """Insert a batch, then acknowledge it: a crash in between re-delivers it,
    and the unique request id makes the second insert a no-op."""
    if not messages:
        return 0
    entries: list[dict[str, Any]] = []
    for _, fields in messages:
        try:
            entries.append(orjson.loads(fields[b"r"]))
        except (KeyError, orjson.JSONDecodeError):
            logger.error("skipping a malformed usage record")
    with transaction.atomic():
        insert_records(entries)
    ids = [message_id for message_id, _ in messages]
    client.xack(key, GROUP, *ids)
    client.xdel(key, *ids)
    return len(entries)


@shared_task(name="governance.usage_drain", ignore_result=True)
def usage_drain(batch_size: int = 1000, max_batches: int = 100) -> int:
    """Move usage records from the Redis stream into the database."""
    if not settings.REDIS_URL:
        return 0  # embedded mode writes to the database directly
    from gateway_project.redis_client import sync_client

    client = sync_client()
    key = stream_key()
    _ensure_group(client, key)
    consumer = _consumer_name()
    stored = 0
    # Batches a dead worker read but never acknowledged.
    _, claimed, _ = client.xautoclaim(
        key, GROUP, consumer, settings.GATEWAY_LEDGER_CLAIM_IDLE_MS, "0-0", count=batch_size
    )
    stored += _store(client, key, claimed)
    for _ in range(max_batches):
        response = client.xreadgroup(GROUP, consumer, {key: ">"}, count=batch_size)
        messages = response[0][1] if response else []
        if not messages:
            break
        stored += _store(client, key, messages)
    return stored

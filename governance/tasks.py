"""Celery tasks of the ledger: draining the usage stream, rollups, budget periods, retention.

Each task is a thin call of its job (``governance.rollups``,
``governance.budget_periods``, ``governance.retention``); the schedule is
``CELERY_BEAT_SCHEDULE`` in the settings, run by Celery beat in cluster mode
and in process embedded (``governance.schedule``).
"""

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

from audit.context import system_actor
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


def _soft_budget() -> float:
    """Seconds a job may work before it stops at a step boundary (under the time limits)."""
    return max(10.0, settings.CELERY_TASK_SOFT_TIME_LIMIT * 0.5)


@shared_task(name="governance.usage_rollup", ignore_result=True)
def usage_rollup() -> int:
    """Add the records inserted since the last run to the hourly and daily rollups."""
    from governance.rollups import usage_rollup as run

    return run(time_budget=_soft_budget()).hours


@shared_task(name="governance.budget_periods_close", ignore_result=True)
def budget_periods_close() -> int:
    """Close the finished budget periods (history, reconciliation; one audit event each)."""
    from governance.budget_periods import budget_periods_close as run

    with system_actor("budget_periods_close"):
        return run().closed


@shared_task(name="governance.records_prune", ignore_result=True)
def records_prune() -> int:
    """Delete raw request records past the retention period."""
    from governance.retention import records_prune as run

    return run(time_budget=_soft_budget()).deleted

"""The response cache shares admission's and settlement's Redis round trips,
also on a Redis server that has not (or no longer) got the scripts."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.conf import settings

from gateway_project.redis_client import redis_key
from governance.limits import (
    ADMIT_SCRIPT,
    SETTLE_SCRIPT,
    AdmissionPlan,
    CounterCheck,
    RedisLimits,
    SlotCheck,
)

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis limits backend")


def fresh(script: str) -> str:
    """A variant of ``script`` this Redis server has never loaded."""
    return f"{script}\n-- {uuid.uuid4().hex}"


async def exercise() -> dict:
    limits = RedisLimits.connect(settings.REDIS_URL, timeout=5)
    client = limits.client
    limits.admit_script = client.register_script(fresh(ADMIT_SCRIPT))
    limits.settle_script = client.register_script(fresh(SETTLE_SCRIPT))
    tag = uuid.uuid4().hex
    counter, slots = redis_key("t", tag, "counter"), redis_key("t", tag, "slots")
    stored, written = redis_key("t", tag, "stored"), redis_key("t", tag, "written")
    now = time.time()

    def plan(amount: int) -> AdmissionPlan:
        return AdmissionPlan(
            counters=[CounterCheck(counter, 10, amount, int(now) + 60, "tokens", "10 tokens")],
            slots=[SlotCheck(slots, 1, "1 concurrent request")],
        )

    await client.set(stored, b"an answer")
    first = plan(4)
    admitted, found = await limits.admit_and_get(first, now, stored)  # NOSCRIPT, then loaded
    taken = int(await client.get(counter))
    await limits.settle_and_set(first, {counter: -4}, now, written, b"fresh", 30)  # NOSCRIPT too
    settled = int(await client.get(counter))
    slot_holders = await client.zcard(slots)
    refused, found_anyway = await limits.admit_and_get(plan(11), now, stored)
    result = {
        "admitted": admitted.admitted,
        "values": admitted.values,
        "found": found,
        "taken": taken,
        "settled": settled,
        "slot_holders": slot_holders,
        "written": await client.get(written),
        "ttl": await client.ttl(written),
        "refused": refused.admitted,
        "refused_kind": refused.refused_counter.kind if refused.refused_counter else None,
        "found_anyway": found_anyway,
        "missing": (await limits.admit_and_get(plan(1), now, redis_key("t", tag, "none")))[1],
    }
    await client.delete(counter, slots, stored, written)
    await limits.aclose()
    return result


def test_admission_and_lookup_then_settlement_and_store_each_take_effect_once():
    result = asyncio.run(exercise())
    assert result["admitted"] and result["values"] == [4]
    assert result["found"] == b"an answer"
    assert result["taken"] == 4  # taken once, although the first EVALSHA met NOSCRIPT
    assert result["settled"] == 0
    assert result["slot_holders"] == 0
    assert result["written"] == b"fresh" and 0 < result["ttl"] <= 30
    assert not result["refused"] and result["refused_kind"] == "tokens"
    assert result["found_anyway"] == b"an answer"
    assert result["missing"] is None

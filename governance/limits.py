"""Admission and settlement: every limit checked and taken in one atomic step.

An :class:`AdmissionPlan` lists what a request must take: counter increments
(requests and tokens per window, budget reservations) against their limits,
and concurrency slots. :meth:`LimitsBackend.admit` takes all of them or none
of them; :meth:`LimitsBackend.settle` replaces reservations by actual
amounts and releases the slots.

Two backends behind one interface: Redis (one Lua script, one round trip;
exact across any number of processes) and in-process memory (embedded mode,
one process). Counter keys carry the start of their window or period, so
nothing needs resetting.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from gateway_project.fast_redis import PipelinedRedis

# A concurrency slot held by a process that died is freed after this long.
SLOT_LEASE_SECONDS = 900


@dataclass(slots=True)
class CounterCheck:
    """Add ``amount`` to ``key`` unless that would pass ``limit``."""

    key: str
    limit: int
    amount: int
    expires_at: int  # epoch seconds: the end of the window or period
    kind: str  # "requests", "tokens" or "budget": which refusal it causes
    label: str  # which limit, for the error message
    # How long the counter outlives its window: budget counters stay until
    # their period is closed and reconciled (governance.budget_periods).
    keep_seconds: int = 60

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.expires_at - time.time()))


@dataclass(slots=True)
class SlotCheck:
    """Hold one of ``limit`` concurrent slots under ``key``."""

    key: str
    limit: int
    label: str


@dataclass(slots=True)
class AdmissionPlan:
    counters: list[CounterCheck] = field(default_factory=list)
    slots: list[SlotCheck] = field(default_factory=list)
    lease: str = field(default_factory=lambda: os.urandom(8).hex())

    def __bool__(self) -> bool:
        return bool(self.counters or self.slots)


@dataclass(slots=True)
class Admission:
    """The outcome of :meth:`LimitsBackend.admit`."""

    admitted: bool
    # After admission: each counter's value, in plan order (for headers).
    values: list[int] = field(default_factory=list)
    refused_counter: CounterCheck | None = None
    refused_slot: SlotCheck | None = None


class LimitsBackend(Protocol):
    async def admit(self, plan: AdmissionPlan, now: float) -> Admission: ...

    async def values(self, keys: list[str], now: float) -> list[int]:
        """The current values of counters (0 for one not started)."""
        ...

    async def settle(self, plan: AdmissionPlan, adjustments: dict[str, int], now: float) -> None:
        """Add ``adjustments`` (key → delta) and release the plan's slots."""
        ...


class MemoryLimits:
    """Embedded mode: the same semantics in this process's memory.

    Admission has no ``await`` between check and take, so on one event loop
    it is atomic.
    """

    def __init__(self) -> None:
        self.counters: dict[str, tuple[int, float]] = {}
        self.slots: dict[str, dict[str, float]] = {}

    def _value(self, key: str, now: float) -> int:
        entry = self.counters.get(key)
        if entry is None or entry[1] <= now:
            return 0
        return entry[0]

    async def values(self, keys: list[str], now: float) -> list[int]:
        return [self._value(key, now) for key in keys]

    def final_value(self, key: str) -> int | None:
        """A counter's value, also after its window ended (None if never taken or purged)."""
        entry = self.counters.get(key)
        return None if entry is None else entry[0]

    async def admit(self, plan: AdmissionPlan, now: float) -> Admission:
        for check in plan.counters:
            if check.amount > 0 and self._value(check.key, now) + check.amount > check.limit:
                return Admission(False, refused_counter=check)
        for slot in plan.slots:
            holders = self.slots.setdefault(slot.key, {})
            for lease in [lease for lease, until in holders.items() if until <= now]:
                del holders[lease]
            if len(holders) >= slot.limit:
                return Admission(False, refused_slot=slot)
        values = []
        for check in plan.counters:
            value = self._value(check.key, now) + check.amount
            self.counters[check.key] = (value, check.expires_at)
            values.append(value)
        for slot in plan.slots:
            self.slots[slot.key][plan.lease] = now + SLOT_LEASE_SECONDS
        if len(self.counters) > 50_000:
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
        return Admission(True, values=values)

    async def settle(self, plan: AdmissionPlan, adjustments: dict[str, int], now: float) -> None:
        for key, delta in adjustments.items():
            value, expires = self.counters.get(key, (0, now))
            if expires > now:
                self.counters[key] = (value + delta, expires)
        for slot in plan.slots:
            self.slots.get(slot.key, {}).pop(plan.lease, None)


# KEYS: counter keys, then slot keys.
# ARGV: now, lease, lease_until, n_counters, then per counter (limit, amount,
# when the key expires), then per slot (limit).
# Returns {1, value...} when admitted, {0, "c"|"s", index} when refused.
ADMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local lease_until = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local slot_base = 5 + 3 * n
for i = 1, n do
  local limit = tonumber(ARGV[2 + 3 * i])
  local amount = tonumber(ARGV[3 + 3 * i])
  if amount > 0 and (tonumber(redis.call('GET', KEYS[i]) or '0') + amount) > limit then
    return {0, 'c', i}
  end
end
for j = n + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[j], '-inf', now)
  if redis.call('ZCARD', KEYS[j]) >= tonumber(ARGV[slot_base + j - n - 1]) then
    return {0, 's', j - n}
  end
end
local result = {1}
for i = 1, n do
  local value = redis.call('INCRBY', KEYS[i], tonumber(ARGV[3 + 3 * i]))
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[4 + 3 * i]))
  result[#result + 1] = value
end
for j = n + 1, #KEYS do
  redis.call('ZADD', KEYS[j], lease_until, lease)
  redis.call('EXPIRE', KEYS[j], SLOT_KEY_TTL)
end
return result
""".replace("SLOT_KEY_TTL", str(SLOT_LEASE_SECONDS * 2))


SETTLE_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tonumber(ARGV[1 + i]))
  end
end
for j = n + 1, #KEYS do
  redis.call('ZREM', KEYS[j], ARGV[n + 2])
end
return 1
"""


class RedisLimits:
    """Cluster mode: exact across every process sharing the Redis server.

    The calls of the request path go through ``fast`` (the data plane's
    pipelined client, ``gateway_project.fast_redis``); ``client`` (redis-py)
    serves the rest: registering the scripts, the outage reconciliation.
    """

    def __init__(self, client, fast: PipelinedRedis) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.fast = fast
        self.admit_script = client.register_script(ADMIT_SCRIPT)
        self.settle_script = client.register_script(SETTLE_SCRIPT)

    @classmethod
    def connect(cls, url: str, *, timeout: float) -> RedisLimits:
        """Both clients for the Redis server at ``url``, each call bounded by ``timeout``."""
        from gateway_project.fast_redis import PipelinedRedis
        from gateway_project.redis_client import async_client

        return cls(async_client(timeout=timeout, url=url), PipelinedRedis(url, timeout=timeout))

    async def aclose(self) -> None:
        await self.fast.aclose()
        await self.client.aclose()

    async def values(self, keys: list[str], now: float) -> list[int]:
        if not keys:
            return []
        return [int(value or 0) for value in await self.fast.call("MGET", *keys)]

    def _admit_call(self, plan: AdmissionPlan, now: float) -> tuple[list[str], list[int | str]]:
        keys = [c.key for c in plan.counters] + [s.key for s in plan.slots]
        args: list[int | str] = [
            int(now),
            plan.lease,
            int(now) + SLOT_LEASE_SECONDS,
            len(plan.counters),
        ]
        for check in plan.counters:
            args.extend((check.limit, check.amount, check.expires_at + check.keep_seconds))
        args.extend(slot.limit for slot in plan.slots)
        return keys, args

    @staticmethod
    def _admission(plan: AdmissionPlan, result: list) -> Admission:  # type: ignore[type-arg]
        if result[0] == 1:
            return Admission(True, values=[int(v) for v in result[1:]])
        kind = result[1].decode() if isinstance(result[1], bytes) else result[1]
        index = int(result[2]) - 1
        if kind == "c":
            return Admission(False, refused_counter=plan.counters[index])
        return Admission(False, refused_slot=plan.slots[index])

    async def admit(self, plan: AdmissionPlan, now: float) -> Admission:
        keys, args = self._admit_call(plan, now)
        script = self.admit_script
        return self._admission(plan, await self.fast.evalsha(script.script, script.sha, keys, args))

    def _settle_call(
        self, plan: AdmissionPlan, adjustments: dict[str, int]
    ) -> tuple[list[str], list[int | str]] | None:
        changed = {key: delta for key, delta in adjustments.items() if delta}
        if not changed and not plan.slots:
            return None
        # A counter whose period already ended is left alone (not recreated
        # without an expiry).
        keys = [*changed, *(slot.key for slot in plan.slots)]
        return keys, [len(changed), *changed.values(), plan.lease]

    async def settle(self, plan: AdmissionPlan, adjustments: dict[str, int], now: float) -> None:
        call = self._settle_call(plan, adjustments)
        if call is not None:
            script = self.settle_script
            await self.fast.evalsha(script.script, script.sha, *call)

    async def get(self, key: str) -> bytes | None:
        """The value of ``key`` (the response cache's lookup of its own)."""
        return await self.fast.call("GET", key)

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        """``key`` set to ``value`` for ``ttl`` seconds (the cache's store of its own)."""
        await self.fast.call("SET", key, value, "EX", ttl)

    # The response cache (``proxy.cache``) rides on these round trips: its
    # lookup on admission's, its store on settlement's. A server that lost
    # the scripts gets them loaded by the script call of :meth:`admit` /
    # :meth:`settle`, once.

    async def admit_and_get(
        self, plan: AdmissionPlan, now: float, key: str
    ) -> tuple[Admission, bytes | None]:
        """:meth:`admit`, and the value of ``key``, in one round trip."""
        keys, args = self._admit_call(plan, now)
        result, found = await self.fast.execute(
            ("EVALSHA", self.admit_script.sha, len(keys), *keys, *args), ("GET", key)
        )
        if not isinstance(found, bytes):
            found = None
        if isinstance(result, NoScriptError):
            return await self.admit(plan, now), found
        if isinstance(result, Exception):
            raise result
        return self._admission(plan, result), found

    async def settle_and_set(
        self,
        plan: AdmissionPlan,
        adjustments: dict[str, int],
        now: float,
        key: str,
        value: bytes,
        ttl: int,
    ) -> None:
        """:meth:`settle`, and ``key`` set to ``value`` for ``ttl`` seconds, in one round trip."""
        call = self._settle_call(plan, adjustments)
        commands: list[tuple[Any, ...]] = [("SET", key, value, "EX", ttl)]
        if call is not None:
            commands.append(("EVALSHA", self.settle_script.sha, len(call[0]), *call[0], *call[1]))
        results = await self.fast.execute(*commands)
        if call is not None and isinstance(results[1], NoScriptError):
            await self.settle(plan, adjustments, now)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, NoScriptError):
                raise result

"""The limits backend while Redis cannot be reached (cluster mode).

:class:`OutageAwareLimits` puts the Redis backend behind a health gate. A
command that fails or takes longer than ``GATEWAY_REDIS_TIMEOUT_SECONDS``
marks Redis down; from then on one request at a time probes it again, after
a pause that doubles up to ``GATEWAY_REDIS_RETRY_MAX_SECONDS`` (with
jitter), and every other request decides at once without a round trip: an
outage costs no timeouts per request and makes no storm of reconnections.

What a request under a limit sees during the outage is the operator's
choice, ``GATEWAY_REDIS_FAILURE_MODE``:

- ``closed`` (default): a 503 ``limits_unavailable`` with ``Retry-After``.
  Budgets and limits stay exact: nothing is served that was not counted.
- ``open``: served, with every limit checked against this process's own
  counters (:class:`~governance.limits.MemoryLimits`), so each replica
  admits up to a full limit of its own: limits are approximate for the
  outage's length. What was taken locally is journaled and added to the
  Redis counters once Redis answers again, so budgets spent during the
  outage are charged afterwards.

Settlements that fail (Redis went away while a request ran) are journaled
the same way, concurrency slots included, in either mode. The gauge
``gateway_limits_degraded`` is 1 while Redis is considered down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions

from gateway_project.fast_settings import settings
from governance.limits import Admission, AdmissionPlan, MemoryLimits, RedisLimits

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_RETRY_SECONDS = 0.25
# Errors that mean "Redis is not there": anything else is a defect and raised.
OUTAGE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

# KEYS: counter keys, then slot keys. ARGV: n, then per counter (delta,
# expires_at), then per slot its lease. A counter missing from Redis is
# created only by what was taken (a positive delta), with its window's expiry.
RECONCILE_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local delta = tonumber(ARGV[2 * i])
  if delta > 0 or redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
    if redis.call('TTL', KEYS[i]) < 0 then
      redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[2 * i + 1]) + 60)
    end
  end
end
for j = n + 1, #KEYS do
  redis.call('ZREM', KEYS[j], ARGV[n + j + 1])
end
return 1
"""


class LimitsUnavailable(Exception):
    """Redis is down and the failure mode is ``closed``."""


class RedisHealth:
    """Whether Redis is considered up, and when to try it again if not."""

    def __init__(self, max_pause: float) -> None:
        self.max_pause = max_pause
        self.down_since: float | None = None
        self.pause = FIRST_RETRY_SECONDS
        self.next_try = 0.0
        self.probing = False

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def may_try(self, now: float) -> bool:
        """True when this caller should use Redis: always while it is up;
        while down, for one caller at a time once the pause is over (the
        caller then reports :meth:`failed` or :meth:`answered`)."""
        if self.down_since is None:
            return True
        if self.probing or now < self.next_try:
            return False
        self.probing = True
        return True

    def failed(self, now: float) -> None:
        if self.down_since is None:
            self.down_since = now
            self.pause = FIRST_RETRY_SECONDS
            _set_degraded(True)
        else:
            self.pause = min(self.pause * 2, self.max_pause)
        self.next_try = now + self.pause * random.uniform(0.5, 1.0)
        self.probing = False

    def answered(self, now: float) -> None:
        if self.down_since is not None:
            logger.warning(
                "Redis answers again after %.1fs; limits are exact again", now - self.down_since
            )
            self.down_since = None
            _set_degraded(False)
        self.probing = False


def _set_degraded(down: bool) -> None:
    from proxy.metrics import metrics

    metrics.set("gateway_limits_degraded", 1 if down else 0)
    if down:
        logger.error(
            "Redis cannot be reached: requests under limits are %s until it answers",
            "counted in this process"
            if settings.GATEWAY_REDIS_FAILURE_MODE == "open"
            else "refused (503)",
        )


class Journal:
    """Counter changes and slot releases not yet applied to Redis."""

    def __init__(self) -> None:
        self.counters: dict[str, tuple[int, int]] = {}  # key → (delta, expires_at)
        self.releases: dict[str, str] = {}  # lease@key → key

    def __bool__(self) -> bool:
        return bool(self.counters or self.releases)

    def add(self, key: str, delta: int, expires_at: int) -> None:
        if delta:
            current = self.counters.get(key, (0, expires_at))[0]
            self.counters[key] = (current + delta, expires_at)

    def release(self, key: str, lease: str) -> None:
        self.releases[f"{lease}@{key}"] = key

    def take(self, now: float) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
        counters = {k: v for k, v in self.counters.items() if v[1] > now and v[0]}
        releases = self.releases
        self.counters, self.releases = {}, {}
        return counters, releases

    def put_back(self, counters: dict[str, tuple[int, int]], releases: dict[str, str]) -> None:
        for key, (delta, expires_at) in counters.items():
            self.add(key, delta, expires_at)
        self.releases.update(releases)


class OutageAwareLimits:
    """Redis limits that survive Redis going away (see the module's docstring)."""

    def __init__(self, remote: RedisLimits, mode: str, max_pause: float) -> None:
        self.remote = remote
        self.mode = mode
        self.local = MemoryLimits()
        self.health = RedisHealth(max_pause)
        self.journal = Journal()
        self.reconcile_script = remote.client.register_script(RECONCILE_SCRIPT)
        self._local_leases: set[str] = set()
        self._reconciling: asyncio.Task[None] | None = None
        from proxy.metrics import metrics

        metrics.set("gateway_limits_degraded", 0)

    async def _on_redis(
        self, call: Callable[[], Awaitable[T]], now: float
    ) -> tuple[bool, T | None]:
        """``(True, result)`` when Redis answered ``call``; ``(False, None)``
        when Redis is down (not tried) or failed just now."""
        if not self.health.may_try(now):
            return False, None
        try:
            result = await call()
        except OUTAGE_ERRORS:
            self.health.failed(time.time())
            return False, None
        except BaseException:
            self.health.probing = False
            raise
        self._answered()
        return True, result

    # The response cache's lookups and stores of its own: the cache handles
    # their failures itself (it answers from the provider).

    async def get(self, key: str) -> bytes | None:
        return await self.remote.get(key)

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self.remote.set(key, value, ttl)

    async def admit(self, plan: AdmissionPlan, now: float) -> Admission:
        answered, admission = await self._on_redis(lambda: self.remote.admit(plan, now), now)
        if answered:
            assert admission is not None
            return admission
        return await self._admit_locally(plan, now)

    async def admit_and_get(
        self, plan: AdmissionPlan, now: float, key: str
    ) -> tuple[Admission, bytes | None]:
        """:meth:`admit` and a cache lookup in one round trip; no entry while Redis is down."""
        answered, result = await self._on_redis(
            lambda: self.remote.admit_and_get(plan, now, key), now
        )
        if answered:
            assert result is not None
            return result
        return await self._admit_locally(plan, now), None

    async def _admit_locally(self, plan: AdmissionPlan, now: float) -> Admission:
        if self.mode != "open":
            raise LimitsUnavailable
        admission = await self.local.admit(plan, now)
        if admission.admitted:
            from proxy.metrics import metrics

            metrics.count("gateway_limits_local_admissions", ())
            self._local_leases.add(plan.lease)
            for check in plan.counters:
                self.journal.add(check.key, check.amount, check.expires_at)
        return admission

    async def settle(self, plan: AdmissionPlan, adjustments: dict[str, int], now: float) -> None:
        if await self._settled_locally(plan, adjustments, now):
            return
        answered, _ = await self._on_redis(lambda: self.remote.settle(plan, adjustments, now), now)
        if not answered:
            self._journal_settlement(plan, adjustments, now)

    async def settle_and_set(
        self,
        plan: AdmissionPlan,
        adjustments: dict[str, int],
        now: float,
        key: str,
        value: bytes,
        ttl: int,
    ) -> None:
        """:meth:`settle` and a cache store in one round trip (no store while Redis is down)."""
        if await self._settled_locally(plan, adjustments, now):
            return
        answered, _ = await self._on_redis(
            lambda: self.remote.settle_and_set(plan, adjustments, now, key, value, ttl), now
        )
        if not answered:
            self._journal_settlement(plan, adjustments, now)

    async def _settled_locally(
        self, plan: AdmissionPlan, adjustments: dict[str, int], now: float
    ) -> bool:
        """Settle a request admitted during the outage here (True), or leave it to Redis."""
        if plan.lease not in self._local_leases:
            return False
        expiry = {check.key: check.expires_at for check in plan.counters}
        self._local_leases.discard(plan.lease)
        await self.local.settle(plan, adjustments, now)
        for key, delta in adjustments.items():
            self.journal.add(key, delta, expiry.get(key, int(now)))
        self._reconcile_soon()
        return True

    def _journal_settlement(
        self, plan: AdmissionPlan, adjustments: dict[str, int], now: float
    ) -> None:
        expiry = {check.key: check.expires_at for check in plan.counters}
        for key, delta in adjustments.items():
            self.journal.add(key, delta, expiry.get(key, int(now)))
        for slot in plan.slots:
            self.journal.release(slot.key, plan.lease)

    async def values(self, keys: list[str], now: float) -> list[int]:
        if not self.health.down:
            try:
                return await self.remote.values(keys, now)
            except OUTAGE_ERRORS:
                self.health.failed(time.time())
        return await self.local.values(keys, now)

    def _answered(self) -> None:
        self.health.answered(time.time())
        self._reconcile_soon()

    def _reconcile_soon(self) -> None:
        if self.journal and not self.health.down and self._reconciling is None:
            self._reconciling = asyncio.get_running_loop().create_task(
                self.reconcile(), name="limits-reconcile"
            )

    async def reconcile(self) -> None:
        """Add what was journaled to Redis (kept for later if Redis fails again)."""
        try:
            counters, releases = self.journal.take(time.time())
            if not counters and not releases:
                return
            keys = [*counters, *releases.values()]
            leases = [name.split("@", 1)[0] for name in releases]
            args: list[int | str] = [len(counters)]
            for delta, expires_at in counters.values():
                args.extend((delta, expires_at))
            args.extend(leases)
            try:
                await self.reconcile_script(keys=keys, args=args)
            except OUTAGE_ERRORS:
                self.journal.put_back(counters, releases)
                self.health.failed(time.time())
                return
            logger.warning(
                "added %d counters and %d slot releases taken during the Redis outage",
                len(counters),
                len(releases),
            )
        finally:
            self._reconciling = None

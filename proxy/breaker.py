"""Circuit breaking per deployment (a provider and its model name).

A breaker counts the outcomes of upstream attempts in a sliding window of
one-second buckets. It *opens* when the window holds at least
``GATEWAY_BREAKER_MIN_FAILURES`` failures that make up at least
``GATEWAY_BREAKER_FAILURE_RATE`` of the attempts: requests then skip the
deployment (to a fallback, or a 503 ``circuit_open``) for
``GATEWAY_BREAKER_OPEN_SECONDS``. After that it is *half-open*: one probe
request at a time goes through; a success closes the breaker, a failure opens
it again. Failures are what a provider's health explains (5xx, timeouts,
connection errors), not a request's own fault (4xx) nor a key's (401/403,
429: those cool the key down instead).

In cluster mode the replicas agree: the process whose window trips the
breaker stores its state in Redis (expiring with the open period) and
publishes the change, and every process applies what it hears. No Redis
call is made for a healthy deployment; a process that starts reads the
breakers open at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import orjson

from gateway_project.fast_settings import settings
from proxy.metrics import metrics
from proxy.retry_budget import Window

logger = logging.getLogger(__name__)

CHANNEL = "breakers"
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

Deployment = tuple[str, str]  # (provider name, provider's model name)


class Breaker:
    """One deployment's window (attempts, failures) and state."""

    __slots__ = ("open_until", "probing", "state", "window")

    def __init__(self) -> None:
        self.window = Window()
        self.state = CLOSED
        self.open_until = 0.0  # wall-clock time, shared between processes
        self.probing = False

    def note(self, now: float, failed: bool) -> None:
        bucket = self.window.bucket(now, settings.GATEWAY_BREAKER_WINDOW_SECONDS)
        bucket[1] += 1
        if failed:
            bucket[2] += 1

    def tripped(self) -> bool:
        attempts, failures = self.window.totals()
        return (
            failures >= settings.GATEWAY_BREAKER_MIN_FAILURES
            and failures >= settings.GATEWAY_BREAKER_FAILURE_RATE * attempts
        )


class Breakers:
    """This process's breakers, by deployment."""

    def __init__(self) -> None:
        self._breakers: dict[Deployment, Breaker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None

    def clear(self) -> None:
        self._breakers.clear()

    def state(self, deployment: Deployment) -> str:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            return CLOSED
        if breaker.state == OPEN and time.time() >= breaker.open_until:
            return HALF_OPEN
        return breaker.state

    def allow(self, deployment: Deployment) -> bool:
        """Whether an attempt may go to ``deployment`` now (a half-open
        breaker lets one probe through at a time)."""
        breaker = self._breakers.get(deployment)
        if breaker is None or breaker.state == CLOSED:
            return True
        if breaker.state == OPEN:
            if time.time() < breaker.open_until:
                return False
            breaker.state = HALF_OPEN
            breaker.probing = False
        if breaker.probing:
            return False
        breaker.probing = True
        return True

    def retry_after(self, deployment: Deployment) -> float:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            return 0.0
        return max(0.0, breaker.open_until - time.time())

    def release(self, deployment: Deployment) -> None:
        """An attempt ended without an outcome (the client left): another may probe."""
        breaker = self._breakers.get(deployment)
        if breaker is not None:
            breaker.probing = False

    def succeeded(self, deployment: Deployment) -> None:
        """The provider answered (an error of the request's or a key's counts too)."""
        breaker = self._breakers.get(deployment)
        if breaker is None:
            # Healthy deployments are only counted once they have failed.
            return
        breaker.note(time.time(), failed=False)
        if breaker.state != CLOSED:
            self._change(deployment, breaker, CLOSED, 0.0)

    def failed(self, deployment: Deployment) -> None:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            breaker = self._breakers[deployment] = Breaker()
        now = time.time()
        breaker.note(now, failed=True)
        if breaker.state == HALF_OPEN or (breaker.state == CLOSED and breaker.tripped()):
            self._change(deployment, breaker, OPEN, now + settings.GATEWAY_BREAKER_OPEN_SECONDS)

    def _change(self, deployment: Deployment, breaker: Breaker, state: str, until: float) -> None:
        self.apply(deployment, state, until)
        logger.warning("circuit %s for %s/%s", state, *deployment)
        if settings.REDIS_URL:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to share with
                asyncio.get_running_loop().create_task(self._share(deployment, state, until))

    def apply(self, deployment: Deployment, state: str, until: float) -> None:
        """Take ``state`` for ``deployment`` (this process's decision or another's)."""
        breaker = self._breakers.get(deployment)
        if breaker is None:
            breaker = self._breakers[deployment] = Breaker()
        breaker.state = state
        breaker.open_until = until
        breaker.probing = False
        if state == CLOSED:
            breaker.window.buckets.clear()
        metrics.set("gateway_circuit_open", 0 if state == CLOSED else 1, deployment)

    # --- sharing between replicas (cluster mode) ------------------------------------

    def _redis(self) -> Any:
        if self._client is None:
            from gateway_project.redis_client import async_client

            self._client = async_client()
        return self._client

    async def _share(self, deployment: Deployment, state: str, until: float) -> None:
        from gateway_project.redis_client import redis_key

        message = orjson.dumps({"d": list(deployment), "s": state, "u": until})
        key = redis_key("breaker", *deployment)
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                if state == CLOSED:
                    pipe.delete(key)
                else:
                    # Kept a while past the open period: a process starting
                    # then still learns that the deployment is on probation.
                    linger = until - time.time() + settings.GATEWAY_BREAKER_OPEN_SECONDS
                    ttl = max(1, math.ceil(linger))
                    pipe.set(key, message, ex=ttl)
                pipe.publish(redis_key(CHANNEL), message)
                await pipe.execute()
        except Exception:
            logger.warning("could not share a circuit breaker's state", exc_info=True)

    async def start(self) -> None:
        """Learn the breakers open now, then follow the other replicas'
        decisions (cluster mode)."""
        if not settings.REDIS_URL or self._tasks:
            return
        try:
            await asyncio.wait_for(self._load(self._redis()), timeout=2)
        except Exception:
            logger.warning("could not read the open circuit breakers", exc_info=True)
        self._tasks.append(asyncio.create_task(self._listen(), name="breaker-listen"))

    async def _load(self, client: Any) -> None:
        from gateway_project.redis_client import redis_key

        async for key in client.scan_iter(match=redis_key("breaker", "*")):
            raw = await client.get(key)
            if raw:
                self._receive(raw)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _receive(self, raw: bytes) -> None:
        data = orjson.loads(raw)
        deployment = (str(data["d"][0]), str(data["d"][1]))
        if data["s"] in STATES:
            self.apply(deployment, data["s"], float(data["u"]))

    async def _listen(self) -> None:
        from gateway_project.redis_client import follow

        async def receive(raw: bytes) -> None:
            try:
                self._receive(raw)
            except (ValueError, KeyError, IndexError, TypeError):
                logger.warning("malformed breaker message ignored")

        # Caught up again at each subscription: no change falls between.
        await follow(CHANNEL, receive, on_subscribed=self._load, what="circuit breaker changes")


breakers = Breakers()

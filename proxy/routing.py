"""Choosing where a request goes, and trying again elsewhere when that fails.

A request's deployments are its route, then the route's fallbacks, then the
fallbacks the request itself names (each allowed for the caller). Each
deployment is tried with retries: on a connection error, a timeout or a 5xx
the same key is tried again after an exponential backoff with jitter; on a
429 or a refused credential the key is cooled down and another key of the
provider takes over at once. Nothing is retried once the first byte of the
answer has reached the client.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway_project.fast_settings import settings
from governance.enforcement import ScopePolicy
from proxy.admission import is_allowed
from proxy.breaker import breakers
from proxy.errors import GatewayError, bad_request
from proxy.metrics import metrics
from proxy.provider_pool import pools
from proxy.retry_budget import budgets
from proxy.snapshot import ProviderEntry, ProviderKeyEntry, RouteEntry, Snapshot

# How long a key that the provider refused (401/403) stays out of rotation.
AUTH_COOL_DOWN_SECONDS = 300.0
# And one that was rate limited without saying for how long.
RATE_LIMIT_COOL_DOWN_SECONDS = 30.0


class KeyCoolDowns:
    """Provider keys (by id) taken out of rotation for a while, in this process."""

    def __init__(self) -> None:
        self._until: dict[int, float] = {}

    def cool(self, key_id: int, seconds: float) -> None:
        self._until[key_id] = time.monotonic() + seconds

    def is_cool(self, key_id: int, now: float) -> bool:
        until = self._until.get(key_id)
        if until is None:
            return False
        if until <= now:
            del self._until[key_id]
            return False
        return True

    def __bool__(self) -> bool:
        return bool(self._until)

    def clear(self) -> None:
        self._until.clear()


cool_downs = KeyCoolDowns()


def pick_key(provider: ProviderEntry, exclude: set[int]) -> ProviderKeyEntry | None:
    """A key by weight among those neither cooling down nor already tried."""
    if not exclude and not cool_downs:
        return provider.pick_key()  # the common case: no bookkeeping to consult
    now = time.monotonic()
    usable = [
        key
        for key in provider.keys
        if key.weight > 0 and key.id not in exclude and not cool_downs.is_cool(key.id, now)
    ]
    if not usable:
        return None
    totals = list(itertools.accumulate(key.weight for key in usable))
    return usable[bisect.bisect_right(totals, random.random() * totals[-1])]


def deployments(
    snapshot: Snapshot,
    route: RouteEntry,
    requested_fallbacks: list[str],
    levels: list[ScopePolicy],
) -> list[RouteEntry]:
    """The route, then its fallbacks, then the request's own; each allowed and once."""
    chosen = [route]
    seen = {(route.provider.name, route.provider_model)}
    for address in (*route.fallbacks, *requested_fallbacks):
        target = snapshot.resolve_model(address)
        if target is None:
            continue
        identity = (target.provider.name, target.provider_model)
        if identity in seen or not is_allowed(levels, address, target):
            continue
        seen.add(identity)
        chosen.append(target)
    return chosen


def backoff(attempt: int, error: GatewayError) -> float:
    """Seconds to wait before retrying ``error``: the provider's word, capped, or
    exponential backoff with full jitter."""
    if error.retry_after is not None:
        return min(error.retry_after, settings.GATEWAY_RETRY_AFTER_MAX_SECONDS)
    ceiling = min(
        settings.GATEWAY_RETRY_BACKOFF_MAX_SECONDS,
        settings.GATEWAY_RETRY_BACKOFF_SECONDS * (2**attempt),
    )
    return random.uniform(ceiling / 2, ceiling)


Attempt = Callable[[RouteEntry, ProviderKeyEntry, int, int], Awaitable[None]]


def pinned_key(provider: ProviderEntry, name: bytes) -> ProviderKeyEntry:
    """The provider key named by ``x-gateway-provider-key``, or a 400."""
    wanted = name.decode("latin-1")
    for key in provider.keys:
        if key.name == wanted:
            return key
    raise bad_request(
        f"The provider '{provider.name}' has no key named '{wanted[:100]}'.",
        param="x-gateway-provider-key",
    )


async def call_with_fallbacks(
    targets: list[RouteEntry],
    attempt: Attempt,
    response_started: Callable[[], bool],
    pinned: ProviderKeyEntry | None = None,
) -> tuple[int, int]:
    """Run ``attempt(target, key, fallback_index, retries)`` until one succeeds.

    A deployment whose circuit breaker is open is skipped; a retry is made
    only while the provider's retry budget allows; each attempt holds one of
    the provider's concurrency slots (a provider at capacity passes the
    request to the next deployment). A ``pinned`` key (debugging) is the only
    key tried, weights and cool-downs notwithstanding. Returns
    ``(fallback_index, retries)`` of the success; raises the last error when
    every deployment failed (503 ``circuit_open`` when none could be tried).
    """
    retries = 0
    last_error: GatewayError | None = None
    circuit_error: GatewayError | None = None
    for index, target in enumerate(targets):
        provider = target.provider
        deployment = (provider.name, target.provider_model)
        tried: set[int] = set()
        for attempt_number in range(settings.GATEWAY_RETRIES + 1):
            key = pick_key(provider, tried) if pinned is None else pinned
            if key is None or key.id in tried:
                break
            if not breakers.allow(deployment):
                circuit_error = circuit_error or circuit_open(target, deployment)
                break
            if attempt_number == 0:
                budgets.requested(provider.name)
            elif not budgets.try_retry(provider.name):
                breakers.release(deployment)
                break
            try:
                await pools.acquire(provider.name)
            except GatewayError as error:  # at capacity: the next deployment
                breakers.release(deployment)
                last_error = error
                break
            try:
                await attempt(target, key, index, retries)
            except GatewayError as error:
                if error.code.startswith("upstream_"):
                    metrics.upstream_failed(provider.name, error.code)
                if error.retryable and not error.key_fault:
                    breakers.failed(deployment)
                else:
                    breakers.succeeded(deployment)  # the provider answered
                if not error.retryable or response_started():
                    raise
                last_error = error
                retries += 1
                if error.key_fault:
                    tried.add(key.id)
                    seconds = (
                        AUTH_COOL_DOWN_SECONDS
                        if error.status != 429
                        else error.retry_after or RATE_LIMIT_COOL_DOWN_SECONDS
                    )
                    cool_downs.cool(key.id, seconds)
                    continue  # another key, at once
                if attempt_number < settings.GATEWAY_RETRIES:
                    await asyncio.sleep(backoff(attempt_number, error))
            except BaseException:
                breakers.release(deployment)  # cancelled: no outcome to count
                raise
            else:
                breakers.succeeded(deployment)
                return index, retries
            finally:
                pools.release(provider.name)
    if last_error is not None:
        raise last_error
    if circuit_error is not None:
        raise circuit_error
    raise GatewayError(
        503,
        f"No usable API key for the provider '{targets[0].provider.name}'.",
        code="no_provider_key",
        headers=[(b"retry-after", b"1")],
    )


def circuit_open(target: RouteEntry, deployment: tuple[str, str]) -> GatewayError:
    seconds = max(1, math.ceil(breakers.retry_after(deployment)))
    return GatewayError(
        503,
        f"The model '{target.name}' is unavailable: its provider is failing "
        f"(circuit open for {seconds} more seconds).",
        code="circuit_open",
        headers=[(b"retry-after", str(seconds).encode())],
    )


def requested_fallbacks(payload: dict[str, Any]) -> list[str]:
    """The request's own ``fallbacks`` (a gateway extension), validated."""
    value = payload.get("fallbacks")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise bad_request("'fallbacks' must be a list of model names.", param="fallbacks")
    return value[:5]

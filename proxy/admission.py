"""Admission and settlement of one inference request (hot path glue).

Access rules first (no I/O), then one call to the limits backend that takes
every rate limit, concurrency slot and budget reservation at once, and after
the answer one call that replaces the reservations by what was used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from governance.enforcement import (
    Price,
    ScopePolicy,
    backend,
    model_allowed,
    output_bound,
    plan_for,
)
from governance.limits import Admission, AdmissionPlan
from governance.outage import LimitsUnavailable
from proxy import cache
from proxy.errors import GatewayError
from proxy.snapshot import RouteEntry
from proxy.usage import Usage

logger = logging.getLogger(__name__)


def is_allowed(levels: list[ScopePolicy], model: str, route: RouteEntry) -> bool:
    """Every level allows the model, by its public name or ``provider/model``."""
    names = (model, f"{route.provider.name}/{route.provider_model}")
    return all(model_allowed(policy, names) for policy in levels)


def check_access(levels: list[ScopePolicy], model: str, route: RouteEntry) -> None:
    if not is_allowed(levels, model, route):
        raise GatewayError(
            403,
            f"This key is not allowed to use the model '{model}'.",
            code="model_not_allowed",
            param="model",
        )


@dataclass(slots=True)
class Ticket:
    """What a request took at admission, to be settled after the answer."""

    plan: AdmissionPlan
    tokens_bound: int
    cost_bound: int
    body_size: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


async def admit(
    levels: list[ScopePolicy],
    prices: list[Price],
    payload: dict[str, Any],
    body_size: int,
    *,
    produces_output: bool = True,
    lookup: cache.Lookup | None = None,
) -> Ticket | None:
    """Take every limit of every level at once, or raise the refusal.

    ``prices`` are those of every deployment that may serve the request; the
    reservation covers the dearest. Requests that produce no output tokens
    (embeddings) reserve their input only. A response cache ``lookup`` that
    reads is made in the same round trip (its ``found`` is filled).
    """
    reading = lookup if lookup is not None and lookup.read else None

    outputs = [output_bound(payload, price) if produces_output else 0 for price in prices]
    # Input tokens never exceed the body's bytes: a safe bound for reservations.
    tokens_bound = body_size + max(outputs)
    cost_bound = max(
        price.cost(body_size, output) for price, output in zip(prices, outputs, strict=True)
    )
    now = time.time()
    plan = plan_for(levels, now=now, tokens_bound=tokens_bound, cost_bound=cost_bound)
    if not plan:
        if reading is not None:
            await cache.fetch(reading)
        return None
    try:
        if reading is not None:
            admission = await cache.admit(plan, now, reading)
        else:
            admission = await backend().admit(plan, now)
    except LimitsUnavailable:
        raise limits_unavailable() from None  # logged once by the backend
    except Exception:
        logger.warning("limits backend unavailable", exc_info=True)
        raise limits_unavailable() from None
    if not admission.admitted:
        raise refusal(admission)
    return Ticket(
        plan=plan,
        tokens_bound=tokens_bound,
        cost_bound=cost_bound,
        body_size=body_size,
        headers=limit_headers(plan, admission, now),
    )


def limits_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "Limits cannot be checked right now; try again shortly.",
        code="limits_unavailable",
        headers=[(b"retry-after", b"1")],
    )


def refusal(admission: Admission) -> GatewayError:
    counter = admission.refused_counter
    if counter is not None:
        retry = str(counter.retry_after).encode()
        if counter.kind == "budget":
            return GatewayError(
                402,
                f"Budget exhausted: {counter.label}.",
                code="budget_exceeded",
                headers=[(b"retry-after", retry)],
            )
        suffix = counter.kind
        return GatewayError(
            429,
            f"Rate limit reached: {counter.label}. Retry in {counter.retry_after}s.",
            code="rate_limit_exceeded",
            headers=[
                (b"retry-after", retry),
                (f"x-ratelimit-limit-{suffix}".encode(), str(counter.limit).encode()),
                (f"x-ratelimit-remaining-{suffix}".encode(), b"0"),
                (f"x-ratelimit-reset-{suffix}".encode(), retry + b"s"),
            ],
        )
    slot = admission.refused_slot
    assert slot is not None
    return GatewayError(
        429,
        f"Too many concurrent requests: {slot.label}.",
        code="concurrency_limit_exceeded",
        headers=[(b"retry-after", b"1")],
    )


def limit_headers(
    plan: AdmissionPlan, admission: Admission, now: float
) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*`` headers for the tightest limits, and the budget left."""
    tightest: dict[str, tuple[int, int, int]] = {}
    for check, value in zip(plan.counters, admission.values, strict=True):
        remaining = max(0, check.limit - value)
        current = tightest.get(check.kind)
        if current is None or remaining < current[1]:
            tightest[check.kind] = (check.limit, remaining, check.expires_at)
    headers = []
    for kind in ("requests", "tokens"):
        if kind in tightest:
            limit, remaining, expires_at = tightest[kind]
            headers += [
                (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(remaining).encode()),
                (
                    f"x-ratelimit-reset-{kind}".encode(),
                    f"{max(0, int(expires_at - now))}s".encode(),
                ),
            ]
    if "budget" in tightest:
        remaining_micros = tightest["budget"][1]
        headers.append(
            (b"x-gateway-budget-remaining", f"{remaining_micros / 1_000_000:.6f}".encode())
        )
    return headers


# The largest token count a usage record holds (PositiveIntegerField).
MAX_TOKENS = 2**31 - 1


def final_usage(
    reported: Usage | None,
    delta_events: int,
    body_size: int,
    price: Price,
    ticket: Ticket | None,
    *,
    input_estimate: int | None = None,
) -> tuple[Usage, int]:
    """What the request used and costs: as reported, else estimated from what streamed.

    Without a report, the output is one token per streamed delta (providers
    stream about one token per event) and the input is ``input_estimate``
    (the gateway's tokenizer) or a quarter of the body's bytes. The cost never
    exceeds the reservation, so a budget cannot be overspent by an estimate.
    """
    usage = reported
    if usage is None:
        # No usage reported (client left, upstream failed mid-stream): count
        # what was streamed.
        estimated_input = input_estimate if input_estimate is not None else body_size // 4
        usage = Usage(
            input_tokens=estimated_input if delta_events else 0,
            output_tokens=delta_events,
            estimated=delta_events > 0,
        )
    if max(usage.input_tokens, usage.output_tokens, usage.cached_tokens) > MAX_TOKENS:
        # A provider's count past what a record can hold (its counts are
        # 32-bit columns) is not believable; kept at the bound, the record is
        # still written and the cost is still bounded by the reservation.
        usage = Usage(
            input_tokens=min(usage.input_tokens, MAX_TOKENS),
            output_tokens=min(usage.output_tokens, MAX_TOKENS),
            cached_tokens=min(usage.cached_tokens, MAX_TOKENS),
            estimated=usage.estimated,
        )
    cost = price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
    if ticket is not None:
        cost = min(cost, ticket.cost_bound)
    return usage, cost


async def settle(
    ticket: Ticket, usage: Usage, cost: int, stored: tuple[cache.Lookup, bytes] | None = None
) -> None:
    """Replace the reservations by actual use and release the slots; ``stored``:
    a response cache entry written in the same round trip."""
    tokens = min(usage.input_tokens + usage.output_tokens, ticket.tokens_bound)
    adjustments: dict[str, int] = {}
    for check in ticket.plan.counters:
        if check.kind == "tokens":
            adjustments[check.key] = adjustments.get(check.key, 0) + tokens - ticket.tokens_bound
        elif check.kind == "budget":
            adjustments[check.key] = adjustments.get(check.key, 0) + cost - ticket.cost_bound
    now = time.time()
    try:
        if stored is not None:
            await asyncio.shield(cache.settle(ticket.plan, adjustments, now, *stored))
        else:
            await asyncio.shield(backend().settle(ticket.plan, adjustments, now))
    except Exception:
        # Slots expire with their lease; reservations stay counted (safe side).
        logger.warning("settlement failed; reservations stand", exc_info=True)

"""The data plane's side of governance: access, admission plan, cost.

Plain Python over the configuration snapshot; no ORM. ``proxy`` calls
:func:`check_access`, :func:`plan_for` and :meth:`Price.cost`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
from dataclasses import dataclass
from typing import Any

from gateway_project.fast_settings import settings
from gateway_project.redis_client import redis_key
from governance import periods
from governance.limits import AdmissionPlan, CounterCheck, LimitsBackend, MemoryLimits, SlotCheck


@dataclass(frozen=True, slots=True)
class BudgetRule:
    id: int
    amount_micros: int
    period: str
    calendar_aligned: bool
    anchor: float

    def bounds(self, now: float) -> tuple[int, int]:
        return periods.period_bounds(
            self.period,
            now,
            calendar_aligned=self.calendar_aligned,
            anchor=self.anchor,
            timezone=settings.GATEWAY_BUDGET_TIMEZONE,
        )


@dataclass(frozen=True, slots=True)
class RateRule:
    id: int
    metric: str
    limit: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    """The rules of one level of the org tree."""

    kind: str  # customer, team or key
    id: int
    allowed_models: tuple[str, ...]
    max_concurrent: int | None
    budgets: tuple[BudgetRule, ...]
    rate_limits: tuple[RateRule, ...]
    # The response cache's TTL set at this level: None inherits, 0 is off.
    cache_ttl: int | None = None
    # A customer whose teams share the response cache's entries.
    cache_shared: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id}"


def policies_from_rows(
    rows: dict[tuple[str, int], dict[str, Any]],
) -> dict[tuple[str, int], ScopePolicy]:
    policies = {}
    for (kind, scope_id), row in rows.items():
        policies[(kind, scope_id)] = ScopePolicy(
            kind=kind,
            id=scope_id,
            allowed_models=tuple(row["allowed_models"]),
            max_concurrent=row["max_concurrent"],
            cache_ttl=row.get("cache_ttl"),
            cache_shared=row.get("cache_shared", False),
            budgets=tuple(
                BudgetRule(
                    id=b["id"],
                    amount_micros=b["amount_micros"],
                    period=b["period"],
                    calendar_aligned=b["calendar_aligned"],
                    anchor=_epoch(b["anchor"]),
                )
                for b in row["budgets"]
            ),
            rate_limits=tuple(
                RateRule(
                    id=r["id"],
                    metric=r["metric"],
                    limit=r["limit"],
                    window_seconds=r["window_seconds"],
                )
                for r in row["rate_limits"]
            ),
        )
    return policies


def _epoch(moment: dt.datetime | None) -> float:
    return moment.timestamp() if moment else 0.0


# --- access -------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def model_allowed(policy: ScopePolicy, names: tuple[str, ...]) -> bool:
    """True when one of the request's model names matches one of the patterns."""
    if not policy.allowed_models:
        return True
    return any(_matches(pattern, name) for pattern in policy.allowed_models for name in names)


# --- prices ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-units per million tokens."""

    input: int
    output: int
    cached_input: int
    max_output_tokens: int | None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
        """The cost in micro-units, rounded up to a whole micro-unit."""
        cached = min(cached_tokens, input_tokens)
        total = (
            (input_tokens - cached) * self.input
            + cached * self.cached_input
            + output_tokens * self.output
        )
        return -(-total // 1_000_000)


FREE = Price(input=0, output=0, cached_input=0, max_output_tokens=None)


# When each price of a model takes effect (epoch seconds) and the price,
# oldest first.
PriceSchedule = tuple[tuple[float, Price], ...]


def _price(row: dict[str, Any]) -> Price:
    return Price(
        input=row["input_micros_per_mtok"],
        output=row["output_micros_per_mtok"],
        cached_input=(
            row["cached_input_micros_per_mtok"]
            if row["cached_input_micros_per_mtok"] is not None
            else row["input_micros_per_mtok"]
        ),
        max_output_tokens=row["max_output_tokens"],
    )


def prices_from_rows(
    rows: dict[tuple[str, str], list[dict[str, Any]]],
) -> dict[tuple[str, str], PriceSchedule]:
    return {
        key: tuple((_epoch(row["effective_from"]), _price(row)) for row in schedule)
        for key, schedule in rows.items()
    }


def price_at(schedule: PriceSchedule | None, moment: float) -> Price | None:
    """The price of ``schedule`` in force at ``moment``; None before its first."""
    if schedule:
        for start, price in reversed(schedule):
            if start <= moment:
                return price
    return None


# --- admission plan -----------------------------------------------------------------


def output_bound(payload: dict[str, Any], price: Price) -> int:
    """The most output tokens the request can produce."""
    requested = (
        payload.get("max_completion_tokens")
        or payload.get("max_tokens")
        or payload.get("max_output_tokens")  # the Responses API
    )
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        bound = requested
    else:
        bound = price.max_output_tokens or settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS
    choices = payload.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        bound *= choices
    return bound


def budget_counter_key(budget_id: int, period_start: int) -> str:
    """The counter of one period (starting at epoch second ``period_start``) of a budget."""
    return redis_key("budget", str(budget_id), str(period_start))


def budget_counter_keep_seconds() -> int:
    """How long a budget counter outlives its period: until it has been reconciled."""
    return int(settings.GATEWAY_BUDGET_CLOSE_DELAY_SECONDS) + 86400


def budget_counter(budget: BudgetRule, now: float) -> tuple[str, int]:
    """The counter of ``budget``'s current period, and when the period ends."""
    start, end = budget.bounds(now)
    return budget_counter_key(budget.id, start), end


def plan_for(
    levels: list[ScopePolicy], *, now: float, tokens_bound: int, cost_bound: int
) -> AdmissionPlan:
    """Everything a request takes at every level of its org tree."""
    plan = AdmissionPlan()
    for policy in levels:
        for rule in policy.rate_limits:
            start, end = periods.window_bounds(now, rule.window_seconds)
            plan.counters.append(
                CounterCheck(
                    key=redis_key("rl", str(rule.id), str(start)),
                    limit=rule.limit,
                    amount=1 if rule.metric == "requests" else tokens_bound,
                    expires_at=end,
                    kind=rule.metric,
                    label=f"{rule.limit} {rule.metric} per {rule.window_seconds}s ({policy.kind})",
                )
            )
        for budget in policy.budgets:
            key, end = budget_counter(budget, now)
            plan.counters.append(
                CounterCheck(
                    key=key,
                    limit=budget.amount_micros,
                    amount=cost_bound,
                    expires_at=end,
                    kind="budget",
                    label=f"{policy.kind} budget ({budget.period})",
                    keep_seconds=budget_counter_keep_seconds(),
                )
            )
        if policy.max_concurrent is not None:
            plan.slots.append(
                SlotCheck(
                    key=redis_key("slots", policy.kind, str(policy.id)),
                    limit=policy.max_concurrent,
                    label=f"{policy.max_concurrent} concurrent requests ({policy.kind})",
                )
            )
    return plan


_memory = MemoryLimits()
_redis_backend: LimitsBackend | None = None


def backend() -> LimitsBackend:
    """Redis in cluster mode (behind its outage handling, ``governance.outage``),
    this process's memory in embedded mode."""
    global _redis_backend
    if not settings.REDIS_URL:
        return _memory
    if _redis_backend is None:
        from governance.limits import RedisLimits
        from governance.outage import OutageAwareLimits

        _redis_backend = OutageAwareLimits(
            RedisLimits.connect(settings.REDIS_URL, timeout=settings.GATEWAY_REDIS_TIMEOUT_SECONDS),
            mode=settings.GATEWAY_REDIS_FAILURE_MODE,
            max_pause=settings.GATEWAY_REDIS_RETRY_MAX_SECONDS,
        )
    return _redis_backend

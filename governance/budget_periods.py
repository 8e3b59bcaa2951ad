"""Closing finished budget periods: history, and reconciliation of the two views of spend.

The data plane counts spend in a live counter per budget and period (Redis
in cluster mode, process memory embedded; ``governance.enforcement``): a
reservation at admission, replaced by the actual cost at settlement. The
request log records each request's cost. When a period has been over for
``GATEWAY_BUDGET_CLOSE_DELAY_SECONDS`` (requests in flight have settled and
their records have landed), :func:`budget_periods_close` writes one
:class:`~governance.models.BudgetPeriodHistory` per budget and period with
both numbers, through :func:`governance.services.budget_period_close`
(see there for what *matched*, *mismatch* and *no_counter* mean).

What reconciling does **not** do: rewrite anything. The finished period's
counter no longer gates requests, and the request log is the source of
truth for spend; a mismatch is logged as a warning and kept in the
history (REST API, console) for an operator to look at. Records that arrive
after the closing (a worker that was down for longer than the delay) are
not in ``spent_micros``; the rollups and the request log still count them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.utils import timezone

from governance import enforcement
from governance.limits import MemoryLimits
from governance.models import Budget, BudgetPeriodHistory, Reconciliation, RequestRecord
from governance.periods import period_bounds
from governance.services import budget_period_close

logger = logging.getLogger(__name__)

# At most this many periods of one budget are closed per run (a 1-minute
# budget after a day without a worker catches up over a few runs).
MAX_PERIODS_PER_RUN = 500
RECORD_SCOPE = {"customer": "customer_id", "team": "team_id", "key": "key_id"}


@dataclass(frozen=True)
class ClosingRun:
    closed: int
    mismatches: int


def _bounds(budget: Budget, moment: float) -> tuple[int, int]:
    return period_bounds(
        budget.period,
        moment,
        calendar_aligned=budget.calendar_aligned,
        anchor=budget.anchor.timestamp(),
        timezone=settings.GATEWAY_BUDGET_TIMEZONE,
    )


def counter_final_value(budget_id: int, period_start: int) -> int | None:
    """The live counter of a finished period, or None when it is not (or no longer) kept."""
    key = enforcement.budget_counter_key(budget_id, period_start)
    if settings.REDIS_URL:
        from gateway_project.redis_client import sync_client

        value = sync_client().get(key)
        return None if value is None else int(value)
    backend = enforcement.backend()
    return backend.final_value(key) if isinstance(backend, MemoryLimits) else None


def periods_to_close(budget: Budget, *, now: float, after: int | None) -> list[tuple[int, int]]:
    """The finished periods of ``budget`` after epoch second ``after`` (from its creation)."""
    ready_before = now - settings.GATEWAY_BUDGET_CLOSE_DELAY_SECONDS
    moment = float(after) if after is not None else budget.created_at.timestamp()
    periods = []
    while len(periods) < MAX_PERIODS_PER_RUN:
        start, end = _bounds(budget, moment)
        if end > ready_before:
            break
        periods.append((start, end))
        moment = float(end)
    return periods


def budget_periods_close(*, now: dt.datetime | None = None) -> ClosingRun:
    """Close every finished period of every budget not closed yet."""
    current = (now or timezone.now()).timestamp()
    last_closed = dict(
        BudgetPeriodHistory.objects.values("budget_id")
        .annotate(last=Max("period_end"))
        .values_list("budget_id", "last")
    )
    closed = mismatches = 0
    for budget in Budget.objects.all():
        last = last_closed.get(budget.pk)
        after = int(last.timestamp()) if last is not None else None
        kind, owner_id = budget.scope
        for start, end in periods_to_close(budget, now=current, after=after):
            period_start = dt.datetime.fromtimestamp(start, dt.UTC)
            period_end = dt.datetime.fromtimestamp(end, dt.UTC)
            totals = RequestRecord.objects.filter(
                **{RECORD_SCOPE[kind]: owner_id}, time__gte=period_start, time__lt=period_end
            ).aggregate(spent=Sum("cost_micros", default=0), requests=Count("id"))
            history = budget_period_close(
                budget=budget,
                period_start=period_start,
                period_end=period_end,
                spent_micros=totals["spent"],
                requests=totals["requests"],
                counter_micros=counter_final_value(budget.pk, start),
            )
            if history is None:
                continue
            closed += 1
            if history.reconciliation != Reconciliation.MATCHED:
                mismatches += 1
                logger.warning(
                    "budget %s period %s: request log %d, counter %s (%s)",
                    budget.pk,
                    period_start.isoformat(),
                    history.spent_micros,
                    history.counter_micros,
                    history.reconciliation,
                )
    if closed:
        logger.info("closed %d budget periods (%d not matching)", closed, mismatches)
    return ClosingRun(closed=closed, mismatches=mismatches)

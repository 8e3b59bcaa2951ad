"""Retry budgets: retries at most a share of recent requests, per provider.

During a sustained outage every request would otherwise be tried
``GATEWAY_RETRIES + 1`` times, multiplying the load on a provider that is
already failing. Each process keeps, per provider, the first attempts and
the retries of the last ``GATEWAY_RETRY_BUDGET_WINDOW_SECONDS`` in
one-second buckets; a retry is allowed while the retries stay below
``GATEWAY_RETRY_BUDGET_RATIO`` of the requests, plus a floor of
``GATEWAY_RETRY_BUDGET_MIN_RETRIES`` so that a quiet provider can still be
retried. A request refused a retry moves on to its fallbacks.
"""

from __future__ import annotations

import time

from gateway_project.fast_settings import settings
from proxy.metrics import metrics


class Window:
    """Two counts per second over a sliding window of whole seconds:
    buckets of ``[second, first count, second count]``, oldest first."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: list[list[int]] = []

    def bucket(self, now: float, span: int) -> list[int]:
        """The bucket of ``now``'s second; buckets older than ``span`` seconds go."""
        second = int(now)
        buckets = self.buckets
        if buckets and buckets[-1][0] == second:
            return buckets[-1]
        bucket = [second, 0, 0]
        buckets.append(bucket)
        horizon = second - span
        while buckets[0][0] <= horizon:
            del buckets[0]
        return bucket

    def totals(self) -> tuple[int, int]:
        """Both counts summed over the window."""
        return (
            sum(bucket[1] for bucket in self.buckets),
            sum(bucket[2] for bucket in self.buckets),
        )


class RetryBudgets:
    """This process's budgets, by provider name."""

    def __init__(self) -> None:
        self._windows: dict[str, Window] = {}

    def clear(self) -> None:
        self._windows.clear()

    def _window(self, provider: str) -> Window:
        window = self._windows.get(provider)
        if window is None:
            window = self._windows[provider] = Window()
        return window

    def requested(self, provider: str) -> None:
        """A request's first attempt at ``provider``."""
        span = settings.GATEWAY_RETRY_BUDGET_WINDOW_SECONDS
        self._window(provider).bucket(time.time(), span)[1] += 1

    def try_retry(self, provider: str) -> bool:
        """Whether a retry at ``provider`` fits the budget (it is counted if so)."""
        window = self._window(provider)
        current = window.bucket(time.time(), settings.GATEWAY_RETRY_BUDGET_WINDOW_SECONDS)
        requests, retries = window.totals()
        allowed = (
            settings.GATEWAY_RETRY_BUDGET_MIN_RETRIES
            + settings.GATEWAY_RETRY_BUDGET_RATIO * requests
        )
        if retries >= allowed:
            metrics.count("gateway_retry_budget_exhausted", (provider,))
            return False
        current[2] += 1
        return True


budgets = RetryBudgets()

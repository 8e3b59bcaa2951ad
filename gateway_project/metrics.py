"""``/metrics``: Django's and the data plane's metrics in Prometheus' text format.

The data plane's come summed over every worker process of the server
(``proxy.metrics``); Django's (django-prometheus: the console, the API) are
those of the worker that answers.
"""

from __future__ import annotations

import hmac
import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from proxy.metrics import GatewayCollector

logger = logging.getLogger(__name__)

_gateway = CollectorRegistry(auto_describe=False)
_gateway.register(GatewayCollector())  # type: ignore[arg-type]


def _allowed(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read the metrics, else the refusal."""
    token = settings.GATEWAY_METRICS_TOKEN
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token):
            return None
        response = HttpResponse("a bearer token is required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if settings.GATEWAY_METRICS_PUBLIC:
        return None
    return HttpResponse(
        "metrics are closed: set GATEWAY_METRICS_TOKEN (or GATEWAY_METRICS_PUBLIC=true)\n",
        status=403,
    )


def _owner_names() -> dict[tuple[str, int], str]:
    from keys.models import Customer, Team

    names = {("team", pk): name for pk, name in Team.objects.values_list("id", "name")}
    names.update(
        {("customer", pk): name for pk, name in Customer.objects.values_list("id", "name")}
    )
    return names


class _Gauges:
    """Gauges read at scrape time: budgets of teams and customers against the
    live counters (keys' budgets are too many to be labels), and in cluster
    mode the usage records waiting in the stream for the Celery worker and the
    tasks waiting in Celery's queue."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def _scrape_time_gauges() -> _Gauges:
    from channels.db import database_sync_to_async

    from governance.enforcement import backend, budget_counter
    from governance.ledger import ledger, stream_key
    from proxy.snapshot import store

    now = time.time()
    budgets, keys = [], []
    for (kind, owner), policy in store.current.policies.items():
        if kind in ("team", "customer"):
            for budget in policy.budgets:
                budgets.append((kind, owner, budget))
                keys.append(budget_counter(budget, now)[0])
    labels = ["scope", "owner", "period"]
    limit = GaugeMetricFamily(
        "gateway_budget_limit_micros", "A budget's amount per period.", labels=labels
    )
    remaining = GaugeMetricFamily(
        "gateway_budget_remaining_micros",
        "What is left of a budget in its current period (reservations included).",
        labels=labels,
    )
    families: list[Metric] = [limit, remaining]
    if budgets:
        spent = await backend().values(keys, now)
        names = await database_sync_to_async(_owner_names)()
        for (kind, owner, budget), used in zip(budgets, spent, strict=True):
            values = [kind, names.get((kind, owner), str(owner)), budget.period]
            limit.add_metric(values, budget.amount_micros)
            remaining.add_metric(values, max(0, budget.amount_micros - used))
    if settings.REDIS_URL:
        backlog = GaugeMetricFamily(
            "gateway_usage_stream_records",
            "Usage records in the Redis stream not yet moved to the database.",
        )
        client = ledger.sink().client  # type: ignore[attr-defined]
        backlog.add_metric([], await client.call("XLEN", stream_key()))
        tasks = GaugeMetricFamily(
            "gateway_celery_queue_tasks",
            "Celery tasks waiting in the broker's default queue (rollups, budget periods, "
            "usage draining).",
        )
        tasks.add_metric([], await client.call("LLEN", "celery"))
        families += [backlog, tasks]
    return _Gauges(families)


def _reconciliation_verdicts() -> Metric:
    """Closed budget periods by reconciliation verdict, counted from their history.

    The history is written once per period and never rewritten, so the
    count only grows (deleting a budget deletes its history: a counter
    reset, which Prometheus' ``rate`` and ``increase`` handle). Read from the
    database rather than counted by the closing job: the job runs in the
    Celery worker, whose counters no gateway process serves.
    """
    from django.db.models import Count

    from governance.models import BudgetPeriodHistory, Reconciliation

    family = CounterMetricFamily(
        "gateway_budget_reconciliation",
        "Finished budget periods closed, by how the request log's spend and the live "
        "counter agreed (matched, mismatch, no_counter).",
        labels=["verdict"],
    )
    counts = dict(
        BudgetPeriodHistory.objects.order_by()
        .values_list("reconciliation")
        .annotate(n=Count("id"))
        .values_list("reconciliation", "n")
    )
    for verdict in Reconciliation.values:
        family.add_metric([verdict], counts.get(verdict, 0))
    return family


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Both sets of metrics; async, so it reads the data plane's totals on the
    event loop that updates them."""
    refusal = _allowed(request)
    if refusal is not None:
        return refusal
    gauges = CollectorRegistry(auto_describe=False)
    try:
        gauges.register(await _scrape_time_gauges())  # type: ignore[arg-type]
    except Exception:  # a scrape without them beats no scrape
        logger.warning("budget and stream gauges unavailable", exc_info=True)
    try:
        from channels.db import database_sync_to_async

        verdicts = await database_sync_to_async(_reconciliation_verdicts)()
        gauges.register(_Gauges([verdicts]))  # type: ignore[arg-type]
    except Exception:
        logger.warning("budget reconciliation counts unavailable", exc_info=True)
    body = generate_latest(REGISTRY) + generate_latest(_gateway) + generate_latest(gauges)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)

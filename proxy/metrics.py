"""The data plane's Prometheus metrics, cheap on the hot path and exact across
worker processes.

A request adds to plain dictionaries of this process (a few dictionary
updates when it ends: no lock, no shared memory, no I/O). Once a second, and
at shutdown, the process writes its totals to ``GATEWAY_METRICS_DIR`` as one
JSON file named by its pid; ``/metrics``, whichever worker serves it, adds up
every worker's file (its own live totals in place of its file). Counters and
histograms of a worker that exited stay counted, as Prometheus' own
multi-process mode does; gauges count only live workers. Without a directory
(one process) the live totals are all there is.

Labels are bounded by construction: provider, served model and team are
names from the configuration, status and codes come from fixed sets; no key,
client-chosen model name or request id is ever a label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from gateway_project.fast_settings import settings

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The gateway's own share of a request: tenths of a millisecond matter.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric: its kind, help text, label names and (histograms) buckets."""

    name: str
    kind: str  # "counter", "histogram" or "gauge"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    # How workers' gauges combine: "sum" (in-flight counts) or "max" (states).
    combine: str = "sum"


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "gateway_requests",
            "counter",
            "Inference requests answered, by endpoint, provider, served model, status and team.",
            ("endpoint", "provider", "model", "status", "team"),
        ),
        Family(
            "gateway_tokens",
            "counter",
            "Tokens accounted, by provider, served model, team and kind (input, output, cached).",
            ("provider", "model", "team", "kind"),
        ),
        Family(
            "gateway_cost_micros",
            "counter",
            "Cost charged, in millionths of the currency unit.",
            ("provider", "model", "team"),
        ),
        Family(
            "gateway_refusals",
            "counter",
            "Requests the gateway refused itself (rate limits, budgets, access), by code.",
            ("code", "team"),
        ),
        Family(
            "gateway_unrecorded_refusals",
            "counter",
            "Requests refused before a key was found and left out of the usage ledger "
            "(beyond GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE), by status.",
            ("status",),
        ),
        Family(
            "gateway_upstream_errors",
            "counter",
            "Failed upstream attempts, by provider and error code.",
            ("provider", "code"),
        ),
        Family(
            "gateway_guardrail_findings",
            "counter",
            "Guardrail rules that fired, by direction (request, response), action "
            "(block, redact, flag) and rule.",
            ("direction", "action", "rule"),
        ),
        Family(
            "gateway_backend_calls",
            "counter",
            "Redis round trips and database queries, by store and by what caused them "
            "(an inference request, or background work such as refreshes and flushes).",
            ("store", "origin"),
        ),
        Family(
            "gateway_cache_lookups",
            "counter",
            "Requests of teams and keys with the response cache on, by endpoint, team "
            "and result (hit, miss, bypass: cache-control or an uncacheable request).",
            ("endpoint", "team", "result"),
        ),
        Family(
            "gateway_retries",
            "counter",
            "Upstream attempts beyond the first, by the provider that finally answered.",
            ("provider",),
        ),
        Family(
            "gateway_fallbacks",
            "counter",
            "Requests answered by a fallback deployment, by the provider that answered.",
            ("provider",),
        ),
        Family(
            "gateway_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to its last byte sent.",
            ("endpoint", "provider", "stream"),
            LATENCY_BUCKETS,
        ),
        Family(
            "gateway_overhead_seconds",
            "histogram",
            "The gateway's own time in a request: its duration less the time spent "
            "waiting for the provider.",
            ("endpoint",),
            OVERHEAD_BUCKETS,
        ),
        Family(
            "gateway_upstream_latency_seconds",
            "histogram",
            "Time from sending the upstream request to the provider's response headers.",
            ("provider",),
            LATENCY_BUCKETS,
        ),
        Family(
            "gateway_time_to_first_token_seconds",
            "histogram",
            "Time from sending the upstream request to the first streamed bytes sent "
            "to the client.",
            ("provider", "model"),
            LATENCY_BUCKETS,
        ),
        Family(
            "gateway_active_requests",
            "gauge",
            "Inference requests in progress.",
            (),
        ),
        Family(
            "gateway_active_streams",
            "gauge",
            "Streamed answers in progress.",
            (),
        ),
        Family(
            "gateway_circuit_open",
            "gauge",
            "1 while a deployment's circuit breaker is open or half-open, else 0.",
            ("provider", "model"),
            combine="max",
        ),
        Family(
            "gateway_retry_budget_exhausted",
            "counter",
            "Retries not made because the provider's retry budget was spent.",
            ("provider",),
        ),
        Family(
            "gateway_provider_queue_depth",
            "gauge",
            "Requests waiting for one of a provider's concurrency slots.",
            ("provider",),
        ),
        Family(
            "gateway_provider_queue_wait_seconds",
            "histogram",
            "Time requests waited for a provider's concurrency slot.",
            ("provider",),
            (*OVERHEAD_BUCKETS, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),
        Family(
            "gateway_provider_queue_drops",
            "counter",
            "Requests refused because a provider's wait buffer was full (or the wait timed out).",
            ("provider", "reason"),
        ),
        Family(
            "gateway_key_lookups",
            "counter",
            "Database lookups of keys missing from the snapshot, by result (found, unknown, "
            "failed; deferred: not made, over GATEWAY_KEY_LOOKUPS_PER_SECOND).",
            ("result",),
        ),
        Family(
            "gateway_limits_degraded",
            "gauge",
            "1 while Redis cannot be reached and limits are refused or counted in "
            "process (GATEWAY_REDIS_FAILURE_MODE), else 0.",
            (),
            combine="max",
        ),
        Family(
            "gateway_limits_local_admissions",
            "counter",
            "Requests admitted against this process's own counters during a Redis outage.",
            (),
        ),
        Family(
            "gateway_usage_buffer_records",
            "gauge",
            "Usage records waiting in the gateway's buffer to be written.",
            (),
        ),
    )
}

BUCKETS = {name: family.buckets for name, family in FAMILIES.items()}
Labels = tuple[str, ...]
STATUS_TEXT = {status: str(status) for status in range(100, 600)}
TOKEN_FIELDS = (("input", "input_tokens"), ("output", "output_tokens"), ("cached", "cached_tokens"))
# Codes of refusals the gateway makes itself (not the provider's).
REFUSAL_STATUSES = frozenset({401, 402, 403, 429})


class Metrics:
    """This process's totals."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, Labels], float] = {}
        # Per bucket counts (not cumulative), the +Inf bucket last, then the sum.
        self.histograms: dict[tuple[str, Labels], list[float]] = {}
        self.gauges: dict[tuple[str, Labels], float] = {}

    def count(self, name: str, labels: Labels, value: float = 1) -> None:
        key = (name, labels)
        counters = self.counters
        counters[key] = counters.get(key, 0) + value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        key = (name, labels)
        series = self.histograms.get(key)
        buckets = BUCKETS[name]
        if series is None:
            series = self.histograms[key] = [0.0] * (len(buckets) + 2)
        series[bisect_left(buckets, value)] += 1
        series[-1] += value

    def add(self, name: str, value: float, labels: Labels = ()) -> None:
        """Move a gauge by ``value``."""
        key = (name, labels)
        self.gauges[key] = self.gauges.get(key, 0) + value

    def set(self, name: str, value: float, labels: Labels = ()) -> None:
        """Set a gauge."""
        self.gauges[(name, labels)] = value

    def request_finished(
        self, endpoint: str, entry: dict[str, Any], team: str, overhead: float | None
    ) -> None:
        """Account one answered inference request (``entry``: its usage record).

        Written for speed (it runs for every request): local names, no
        helper calls for the common counters.
        """
        counters = self.counters
        observe = self.observe
        provider = entry.get("provider") or ""
        model = entry.get("served_model") or ""
        status = entry["status"]
        code = STATUS_TEXT.get(status) or str(status)
        key = ("gateway_requests", (endpoint, provider, model, code, team))
        counters[key] = counters.get(key, 0) + 1
        observe(
            "gateway_request_duration_seconds",
            (endpoint, provider, "true" if entry.get("stream") else "false"),
            entry["latency_ms"] / 1000,
        )
        if overhead is not None:
            observe("gateway_overhead_seconds", (endpoint,), overhead)
        flags = entry.get("guardrail_flags")
        if flags:
            for mark in flags:  # "direction:action:rule"
                self.count("gateway_guardrail_findings", tuple(mark.split(":", 2)))
        if not provider:
            if status in REFUSAL_STATUSES and entry.get("error_code"):
                self.count("gateway_refusals", (entry["error_code"], team))
            return
        for kind, field in TOKEN_FIELDS:
            tokens = entry.get(field)
            if tokens:
                key = ("gateway_tokens", (provider, model, team, kind))
                counters[key] = counters.get(key, 0) + tokens
        cost = entry.get("cost_micros")
        if cost:
            key = ("gateway_cost_micros", (provider, model, team))
            counters[key] = counters.get(key, 0) + cost
        if entry.get("retries"):
            self.count("gateway_retries", (provider,), entry["retries"])
        if entry.get("fallback_index"):
            self.count("gateway_fallbacks", (provider,))
        upstream_ms = entry.get("upstream_ms")
        if upstream_ms is not None:
            observe("gateway_upstream_latency_seconds", (provider,), upstream_ms / 1000)
        if entry.get("stream") and entry.get("ttft_ms") is not None:
            observe(
                "gateway_time_to_first_token_seconds", (provider, model), entry["ttft_ms"] / 1000
            )

    def upstream_failed(self, provider: str, code: str) -> None:
        self.count("gateway_upstream_errors", (provider, code))

    def dump(self) -> dict[str, Any]:
        """The totals as JSON-able lists."""
        from governance.ledger import ledger

        gauges = dict(self.gauges)
        gauges[("gateway_usage_buffer_records", ())] = len(ledger.buffer)
        return {
            kind: [[name, list(labels), value] for (name, labels), value in series.items()]
            for kind, series in (
                ("counters", self.counters),
                ("histograms", self.histograms),
                ("gauges", gauges),
            )
        }


metrics = Metrics()


# --- sharing between worker processes ------------------------------------------------


def _directory() -> Path | None:
    value = settings.GATEWAY_METRICS_DIR
    return Path(value) if value else None


def write_own(directory: Path | None = None) -> None:
    """Write this process's totals where the other workers can read them."""
    directory = directory or _directory()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"gateway-{os.getpid()}.json"
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(orjson.dumps(metrics.dump()))
        os.replace(temporary, target)  # readers see the old file or the new one
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


async def run_writer() -> None:
    """Write this process's totals every ``GATEWAY_METRICS_FLUSH_SECONDS``."""
    while True:
        await asyncio.sleep(settings.GATEWAY_METRICS_FLUSH_SECONDS)
        try:
            await asyncio.to_thread(write_own)
        except OSError:
            logger.warning("could not write the metrics file", exc_info=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dumps() -> Iterator[tuple[bool, dict[str, Any]]]:
    """Every worker's totals, with whether the worker is alive; this process's live."""
    yield True, metrics.dump()
    directory = _directory()
    if directory is None or not directory.is_dir():
        return
    own = os.getpid()
    for path in directory.glob("gateway-*.json"):
        try:
            pid = int(path.stem.removeprefix("gateway-"))
        except ValueError:
            continue
        if pid == own:
            continue
        try:
            yield _alive(pid), orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # vanished or being replaced: the next scrape has it


class GatewayCollector:
    """The data plane's metrics, summed over the workers (a prometheus_client collector)."""

    def collect(self) -> Iterable[Metric]:
        counters: dict[tuple[str, Labels], float] = {}
        histograms: dict[tuple[str, Labels], list[float]] = {}
        gauges: dict[tuple[str, Labels], float] = {}
        for alive, dump in _dumps():
            for name, labels, value in dump["counters"]:
                key = (name, tuple(labels))
                counters[key] = counters.get(key, 0) + value
            for name, labels, series in dump["histograms"]:
                key = (name, tuple(labels))
                total = histograms.get(key)
                if total is None or len(total) != len(series):
                    histograms[key] = list(series)
                else:
                    histograms[key] = [a + b for a, b in zip(total, series, strict=True)]
            if alive:
                for name, labels, value in dump["gauges"]:
                    key = (name, tuple(labels))
                    family = FAMILIES.get(name)
                    if family is not None and family.combine == "max":
                        gauges[key] = max(gauges.get(key, value), value)
                    else:
                        gauges[key] = gauges.get(key, 0) + value
        yield from _families(counters, histograms, gauges)


def _families(
    counters: dict[tuple[str, Labels], float],
    histograms: dict[tuple[str, Labels], list[float]],
    gauges: dict[tuple[str, Labels], float],
) -> Iterator[Metric]:
    for family in FAMILIES.values():
        names = list(family.labels)
        if family.kind == "counter":
            metric: Metric = CounterMetricFamily(family.name, family.help, labels=names)
            for (name, labels), value in counters.items():
                if name == family.name:
                    metric.add_metric(list(labels), value)
        elif family.kind == "histogram":
            metric = HistogramMetricFamily(family.name, family.help, labels=names)
            for (name, labels), series in histograms.items():
                if name != family.name or len(series) != len(family.buckets) + 2:
                    continue
                cumulative, buckets = 0.0, []
                for bound, count in zip((*family.buckets, float("inf")), series, strict=False):
                    cumulative += count
                    buckets.append((_bound(bound), cumulative))
                metric.add_metric(list(labels), buckets, series[-1])
        else:
            metric = GaugeMetricFamily(family.name, family.help, labels=names)
            for (name, labels), value in gauges.items():
                if name == family.name:
                    metric.add_metric(list(labels), value)
            if not names and not any(name == family.name for name, _ in gauges):
                metric.add_metric([], 0)
        yield metric


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))

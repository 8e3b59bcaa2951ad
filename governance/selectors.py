"""Reads of budgets, limits, guardrail policies and prices (for the data plane's
snapshot) and of usage."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import (
    Aggregate,
    CharField,
    Count,
    DateTimeField,
    F,
    FloatField,
    Q,
    QuerySet,
    Sum,
    TextField,
    Value,
)
from django.db.models.functions import Cast, Coalesce, NullIf, TruncDay, TruncHour
from django.utils import timezone

from governance.guardrails import RULE_FIELDS
from governance.models import (
    Budget,
    GuardrailPolicy,
    ModelPrice,
    RateLimit,
    RequestRecord,
    UsageRollup,
)
from governance.periods import period_bounds
from keys.models import Customer, Team, VirtualKey

SCOPE_FIELDS = ("customer_id", "team_id", "virtual_key_id")


def _scope(row: dict[str, Any]) -> tuple[str, int]:
    if row["customer_id"]:
        return ("customer", row["customer_id"])
    if row["team_id"]:
        return ("team", row["team_id"])
    return ("key", row["virtual_key_id"])


def snapshot_rows() -> dict[str, Any]:
    """Policies by scope, the active guardrail policies, and the prices in force now."""
    policies: dict[tuple[str, int], dict[str, Any]] = {}

    def policy(scope: tuple[str, int]) -> dict[str, Any]:
        return policies.setdefault(
            scope,
            {
                "allowed_models": [],
                "max_concurrent": None,
                "cache_ttl": None,
                "cache_shared": False,
                "budgets": [],
                "rate_limits": [],
            },
        )

    for kind, model in (("customer", Customer), ("team", Team), ("key", VirtualKey)):
        extra = ("cache_shared_across_teams",) if model is Customer else ()
        for row in model.objects.values(
            "id", "allowed_models", "max_concurrent_requests", "cache_ttl_seconds", *extra
        ):
            shared = bool(row.get("cache_shared_across_teams"))
            if (
                row["allowed_models"]
                or row["max_concurrent_requests"] is not None
                or row["cache_ttl_seconds"] is not None
                or shared
            ):
                entry = policy((kind, row["id"]))
                entry["allowed_models"] = list(row["allowed_models"] or [])
                entry["max_concurrent"] = row["max_concurrent_requests"]
                entry["cache_ttl"] = row["cache_ttl_seconds"]
                entry["cache_shared"] = shared
    for row in Budget.objects.values(
        "id", *SCOPE_FIELDS, "amount_micros", "period", "calendar_aligned", "anchor"
    ):
        policy(_scope(row))["budgets"].append(row)
    for row in RateLimit.objects.values("id", *SCOPE_FIELDS, "metric", "limit", "window_seconds"):
        policy(_scope(row))["rate_limits"].append(row)

    # Per model: the price in force now and every later one, oldest first,
    # so that a price dated in the future takes over at its moment exactly
    # (the data plane picks by time; no reload needed).
    prices: dict[tuple[str, str], list[dict[str, Any]]] = {}
    now = timezone.now()
    for row in ModelPrice.objects.order_by("provider_kind", "model", "-effective_from").values(
        "provider_kind",
        "model",
        "effective_from",
        "input_micros_per_mtok",
        "output_micros_per_mtok",
        "cached_input_micros_per_mtok",
        "max_output_tokens",
    ):
        schedule = prices.setdefault((row["provider_kind"], row["model"]), [])
        if schedule and schedule[0]["effective_from"] <= now:
            continue  # older than the one in force
        schedule.insert(0, row)
    guardrail_policies = list(
        GuardrailPolicy.objects.filter(is_active=True).values("id", *SCOPE_FIELDS, *RULE_FIELDS)
    )
    return {"policies": policies, "prices": prices, "guardrail_policies": guardrail_policies}


# --- usage: aggregates of the request log ---------------------------------------

USAGE_BUCKETS = ("hour", "day")
# What a usage series can be broken down by, and the request log's column for each.
USAGE_GROUPS = {
    "key": "key_id",
    "team": "team_id",
    "customer": "customer_id",
    "provider": "provider",
    "model": "served_model",  # or, when none served it, the model asked for
}
PERCENTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
TTFT_PERCENTILES = {"ttft_p50_ms": 0.5, "ttft_p95_ms": 0.95, "ttft_p99_ms": 0.99}


@dataclass(frozen=True)
class UsagePoint:
    """The usage of one time bucket and one group (``None`` when not split that way).

    ``errors`` counts answers with a status of 400 or more; latencies (total
    and to the first token) are in milliseconds, interpolated between ranks
    as PostgreSQL's ``percentile_cont`` does (``None`` without requests), and
    within 1% when read from rollups (``governance.rollups``).
    """

    bucket: dt.datetime | None
    group: int | str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_micros: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    ttft_p99_ms: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class _PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def percentile_cont(ordered: list[int], fraction: float) -> float | None:
    """The ``fraction`` percentile of sorted values, linearly interpolated."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _group_expression(group_by: str | None) -> Any:
    if group_by is None:
        return Value(None, output_field=CharField())
    if group_by == "model":
        return Coalesce(NullIf("served_model", Value("")), "requested_model")
    return F(USAGE_GROUPS[group_by])


def usage_series(
    *,
    records: QuerySet[RequestRecord] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    bucket: str | None = "day",
    group_by: str | None = None,
    percentiles: bool = True,
) -> list[UsagePoint]:
    """Requests, errors, tokens, cost and latency percentiles of the request log.

    One point per ``bucket`` (``"hour"``, ``"day"`` in UTC, or ``None`` for
    the whole range) and per value of ``group_by`` (one of
    :data:`USAGE_GROUPS`, or ``None``), oldest bucket first. ``records`` is
    the request log to aggregate, already narrowed (e.g. by
    ``keys.access.Access.scope`` or a filter); ``since`` is inclusive,
    ``until`` exclusive. Counting is done by the database; percentiles by
    the database on PostgreSQL and from the latencies on SQLite, which has
    no percentile aggregate.
    """
    if bucket is not None and bucket not in USAGE_BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(USAGE_BUCKETS)}")
    if group_by is not None and group_by not in USAGE_GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(USAGE_GROUPS)}")
    records = RequestRecord.objects.all() if records is None else records
    if since is not None:
        records = records.filter(time__gte=since)
    if until is not None:
        records = records.filter(time__lt=until)
    dimensions: dict[str, Any] = {
        "bucket": (TruncHour if bucket == "hour" else TruncDay)("time", tzinfo=dt.UTC)
        if bucket
        else Value(None, output_field=DateTimeField()),
        "group": _group_expression(group_by),
    }
    grouped = records.order_by().annotate(**dimensions).values("bucket", "group")
    totals: dict[str, Any] = {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__gte=400)),
        "input_tokens": Sum("input_tokens", default=0),
        "output_tokens": Sum("output_tokens", default=0),
        "cached_tokens": Sum("cached_tokens", default=0),
        "cost_micros": Sum("cost_micros", default=0),
    }
    if not percentiles:
        return _sort_points(
            [
                UsagePoint(**row, latency_p50_ms=None, latency_p95_ms=None)
                for row in grouped.annotate(**totals)
            ]
        )
    in_database = connection.vendor == "postgresql"
    if in_database:
        totals.update({name: _PercentileCont("latency_ms", f) for name, f in PERCENTILES.items()})
        # percentile_cont leaves out NULLs: requests without a first token.
        totals.update({name: _PercentileCont("ttft_ms", f) for name, f in TTFT_PERCENTILES.items()})
    rows = list(grouped.annotate(**totals))
    if not in_database:
        latencies: dict[tuple[Any, Any], list[int]] = {}
        ttfts: dict[tuple[Any, Any], list[int]] = {}
        for row in grouped.values_list("bucket", "group", "latency_ms", "ttft_ms"):
            latencies.setdefault(row[:2], []).append(row[2])
            if row[3] is not None:
                ttfts.setdefault(row[:2], []).append(row[3])
        for row in rows:
            group = (row["bucket"], row["group"])
            ordered = sorted(latencies.get(group, []))
            row.update({name: percentile_cont(ordered, f) for name, f in PERCENTILES.items()})
            ordered = sorted(ttfts.get(group, []))
            row.update({name: percentile_cont(ordered, f) for name, f in TTFT_PERCENTILES.items()})
    return _sort_points([UsagePoint(**row) for row in rows])


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _sort_points(points: list[UsagePoint]) -> list[UsagePoint]:
    points.sort(key=lambda p: (p.bucket or _EPOCH, str(p.group) if p.group is not None else ""))
    return points


def rollup_granularity(
    bucket: str | None, since: dt.datetime | None, until: dt.datetime | None
) -> str | None:
    """Which rollups answer a series over ``[since, until)``, or None if none can.

    Rollups hold whole hours: the range must start and end on the hour.
    Daily rows serve days and totals over whole days; hourly rows the rest
    (which, given the range, read daily rows for the whole days inside it:
    :func:`usage_series_from_rollups`).
    """

    def aligned(moment: dt.datetime | None, unit: str) -> bool:
        if moment is None:
            return True
        moment = moment.astimezone(dt.UTC)
        whole_hour = moment.minute == moment.second == moment.microsecond == 0
        return whole_hour and (unit == "hour" or moment.hour == 0)

    if not (aligned(since, "hour") and aligned(until, "hour")):
        return None
    if bucket != "hour" and aligned(since, "day") and aligned(until, "day"):
        return "day"
    return "hour"


def usage_series_from_rollups(
    *,
    rollups: QuerySet[UsageRollup] | None = None,
    dimension: str = "team",
    granularity: str = "hour",
    bucket: str | None = "day",
    group_by: str | None = None,
    recent: QuerySet[RequestRecord] | None = None,
    percentiles: bool = True,
    span: tuple[dt.datetime | None, dt.datetime | None] | None = None,
) -> list[UsagePoint]:
    """What :func:`usage_series` computes, read from the rollup rows of ``dimension``.

    ``rollups`` is already narrowed (access scope, time range, team, the
    dimension's value); ``group_by`` is ``None``, ``"team"`` or
    ``dimension`` itself. Rows are whole buckets of ``granularity`` (see
    :func:`rollup_granularity`) and hold the request log up to the rollup
    job's cursor; ``recent`` are the records past it under the same
    narrowing (a minute's worth), added one by one so the series is
    complete up to now.

    Without ``percentiles`` the database sums the rows (``GROUP BY``) and no
    histogram is read: a month split by 200 keys is 6,000 daily rows whose
    histograms take seconds to read and merge (docs/ledger.md), their sums
    milliseconds. The latency fields are then ``None``.

    ``span`` is the range ``[since, until)`` the rows are narrowed to, when
    known (``None`` for an open end). Hourly rows asked for days or one
    total are then read as the daily rows of the whole days inside it and
    the hourly rows of the hours around them: a day's row holds the sum of
    its hours exactly (sums and histogram bins), and a month is 30 rows
    instead of 720.
    """
    if bucket is not None and bucket not in USAGE_BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(USAGE_BUCKETS)}")
    if group_by not in (None, "team", dimension):
        raise ValueError(f"rollups of {dimension} cannot be split by {group_by}")
    rows = UsageRollup.objects.all() if rollups is None else rollups
    rows = rows.filter(_rows_of(granularity, bucket, span), dimension=dimension)
    recent = recent if recent is not None else RequestRecord.objects.none()
    if not percentiles:
        return _rollup_sums_in_database(rows, granularity, bucket, group_by, recent)
    return _rollup_series_merged_here(rows, dimension, bucket, group_by, recent)


def _rows_of(
    granularity: str,
    bucket: str | None,
    span: tuple[dt.datetime | None, dt.datetime | None] | None,
) -> Q:
    """Which rows of ``granularity`` answer the range ``span``: daily ones for its whole days."""
    if granularity != "hour" or bucket == "hour" or span is None:
        return Q(granularity=granularity)
    since, until = (None if end is None else end.astimezone(dt.UTC) for end in span)
    if since is None and until is None:
        return Q(granularity="day")
    first = last = None
    if since is not None:  # the first midnight at or after it
        midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
        first = midnight if midnight == since else midnight + dt.timedelta(days=1)
    if until is not None:  # the last midnight at or before it
        last = until.replace(hour=0, minute=0, second=0, microsecond=0)
    if first is not None and last is not None and first >= last:
        return Q(granularity="hour")  # no whole day inside
    days = Q()
    if first is not None:
        days &= Q(bucket__gte=first)
    if last is not None:
        days &= Q(bucket__lt=last)
    return Q(granularity="day") & days | Q(granularity="hour") & ~days


def _rollup_series_merged_here(
    rows: QuerySet[UsageRollup],
    dimension: str,
    bucket: str | None,
    group_by: str | None,
    recent: QuerySet[RequestRecord],
) -> list[UsagePoint]:
    """Rows read and their histograms merged here, per point.

    The histograms come as the database's JSON text, decoded by orjson: the
    JSON field's own decoding (the standard library's, row by row) and
    merging bin by bin were most of a month's read (docs/ledger.md).
    """
    from governance.rollups import histogram_bin, stored_histograms_percentiles

    sums = ROLLUP_SUMS
    width = len(sums)
    numeric = dimension in ("key", "customer")
    # Per point: [*sums, the latency histograms, the ttft histograms] (as stored).
    groups: dict[tuple[Any, Any], list[Any]] = {}

    def point(moment: Any, group: Any) -> list[Any]:
        total = groups.get((moment, group))
        if total is None:
            total = groups[(moment, group)] = [0] * width + [[], []]
        return total

    decode = orjson.loads
    texts = {
        "latency_text": Cast("latency_histogram", TextField()),
        "ttft_text": Cast("ttft_histogram", TextField()),
    }
    fields = ("bucket", "team_id", "value", *sums, "latency_text", "ttft_text")
    for row in rows.order_by().annotate(**texts).values_list(*fields):
        moment = row[0]
        if bucket is None:
            moment = None
        elif bucket == "day":
            moment = moment.astimezone(dt.UTC).replace(hour=0)
        if group_by is None:
            group = None
        elif group_by == "team":
            group = row[1]
        else:
            group = (int(row[2]) if numeric else row[2]) if row[2] else None
        total = point(moment, group)
        for index in range(width):
            total[index] += row[3 + index]
        total[width].append(decode(row[-2]))
        total[width + 1].append(decode(row[-1]))
    for record in recent.order_by().defer("content"):
        moment = record.time.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        if bucket is None:
            moment = None
        elif bucket == "day":
            moment = moment.replace(hour=0)
        if group_by is None:
            group = None
        elif group_by == "model":
            group = record.served_model or record.requested_model
        else:
            group = getattr(record, USAGE_GROUPS[group_by])
        total = point(moment, group)
        total[0] += 1
        total[1] += record.status >= 400
        for index, name in enumerate(sums[2:], start=2):
            total[index] += getattr(record, name)
        total[width].append([histogram_bin(record.latency_ms), 1])
        if record.ttft_ms is not None:
            total[width + 1].append([histogram_bin(record.ttft_ms), 1])
    points = []
    latency_fractions, ttft_fractions = PERCENTILES.values(), TTFT_PERCENTILES.values()
    for (moment, group), total in groups.items():
        latency = stored_histograms_percentiles(total[width], latency_fractions)
        ttft = stored_histograms_percentiles(total[width + 1], ttft_fractions)
        points.append(
            UsagePoint(
                bucket=moment,
                group=group,
                **dict(zip(sums, total[:width], strict=True)),
                **dict(zip(PERCENTILES, latency, strict=True)),
                **dict(zip(TTFT_PERCENTILES, ttft, strict=True)),
            )
        )
    return _sort_points(points)


ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_micros",
)
# Groups that are ids (rows and the percentile query give them as text).
NUMERIC_GROUPS = ("key", "team", "customer")


def _point_keys(
    *, rollup: bool, granularity: str, bucket: str | None, group_by: str | None
) -> dict[str, Any]:
    """The ``b`` (bucket) and ``g`` (group, as text) of rollup rows or of records."""
    if bucket is None:
        moment: Any = Value(None, output_field=DateTimeField())
    elif rollup:
        moment = F("bucket")
        if bucket == "day" and granularity == "hour":
            moment = TruncDay("bucket", tzinfo=dt.UTC)
    else:
        moment = (TruncHour if bucket == "hour" else TruncDay)("time", tzinfo=dt.UTC)
    if group_by is None:
        group: Any = Value(None, output_field=CharField())
    elif rollup:
        group = Cast("team_id", CharField()) if group_by == "team" else F("value")
    else:
        group = Cast(_group_expression(group_by), CharField())
    return {"b": moment, "g": group}


def _rollup_sums_in_database(
    rows: QuerySet[UsageRollup],
    granularity: str,
    bucket: str | None,
    group_by: str | None,
    recent: QuerySet[RequestRecord],
) -> list[UsagePoint]:
    """The rows' sums by the database, grouped by point; no histogram read."""
    newer = None if recent.query.is_empty() else recent
    keys = (
        _point_keys(rollup=True, granularity=granularity, bucket=bucket, group_by=group_by),
        _point_keys(rollup=False, granularity=granularity, bucket=bucket, group_by=group_by),
    )
    totals: dict[tuple[Any, Any], dict[str, int]] = {}
    summed = rows.order_by().annotate(**keys[0]).values("b", "g")
    from_records = {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__gte=400)),
        **{name: Sum(name) for name in ROLLUP_SUMS[2:]},
    }
    sources = [summed.annotate(**{name: Sum(name) for name in ROLLUP_SUMS})]
    if newer is not None:
        by_point = newer.order_by().annotate(**keys[1]).values("b", "g")
        sources.append(by_point.annotate(**from_records))
    for source in sources:
        for row in source:
            total = totals.setdefault((row["b"], row["g"]), dict.fromkeys(ROLLUP_SUMS, 0))
            for name in ROLLUP_SUMS:
                total[name] += int(row[name] or 0)
    numeric = group_by in NUMERIC_GROUPS
    points = []
    for (moment, group), total in totals.items():
        points.append(
            UsagePoint(
                bucket=moment,
                group=(int(group) if numeric else group) if group not in (None, "") else None,
                **total,
                latency_p50_ms=None,
                latency_p95_ms=None,
            )
        )
    return _sort_points(points)


def usage_group_labels(group_by: str, values: Iterable[Any]) -> dict[Any, str]:
    """Names for the ``group`` values of a usage series (ids of keys, teams, customers).

    Providers and models are their own names; an id whose object is gone
    keeps its number.
    """
    values = [value for value in values if value is not None]
    models = {"key": VirtualKey, "team": Team, "customer": Customer}
    if group_by not in models:
        return {value: str(value) for value in values}
    names = dict(models[group_by].objects.filter(pk__in=values).values_list("pk", "name"))
    return {value: names.get(value, f"#{value}") for value in values}


# --- the request log: keyset pages ----------------------------------------------


@dataclass(frozen=True)
class RequestLogPage:
    """One page of the request log, newest first, and the cursor of the next (or None)."""

    records: list[RequestRecord]
    next_cursor: str | None


def _encode_cursor(record: RequestRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.time.isoformat()}|{record.pk}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        moment, _, pk = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return dt.datetime.fromisoformat(moment), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor of the request log") from None


def request_log_page(
    *, records: QuerySet[RequestRecord], cursor: str | None = None, size: int = 50
) -> RequestLogPage:
    """The ``size`` records after ``cursor`` (from the start without one).

    A keyset page, ordered by time then id, both descending: reading page
    ten thousand costs what reading the first does, and records arriving
    meanwhile neither shift nor repeat rows.
    """
    records = records.order_by("-time", "-id").defer("content")
    if cursor:
        moment, pk = _decode_cursor(cursor)
        records = records.filter(Q(time__lt=moment) | Q(time=moment, id__lt=pk))
    rows = list(records[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return RequestLogPage(records=rows, next_cursor=_encode_cursor(rows[-1]) if more else None)


# --- budgets: what has been spent in the current period ------------------------------


@dataclass(frozen=True)
class BudgetSpend:
    """A budget, its current period and what the request log says was spent in it."""

    budget: Budget
    period_start: dt.datetime
    period_end: dt.datetime
    spent_micros: int

    @property
    def fraction(self) -> float:
        """Spent over allowed, capped at 1 (a budget of 0 is spent at once)."""
        if self.budget.amount_micros <= 0:
            return 1.0
        return min(1.0, self.spent_micros / self.budget.amount_micros)


_RECORD_SCOPE = {"customer": "customer_id", "team": "team_id", "key": "key_id"}


def budget_spend_list(
    *, budgets: QuerySet[Budget], now: dt.datetime | None = None
) -> list[BudgetSpend]:
    """Each budget with its spend so far this period (one query per budget)."""
    now = now or timezone.now()
    result = []
    for budget in budgets.select_related("customer", "team", "virtual_key"):
        start, end = period_bounds(
            budget.period,
            now.timestamp(),
            calendar_aligned=budget.calendar_aligned,
            anchor=budget.anchor.timestamp(),
            timezone=settings.GATEWAY_BUDGET_TIMEZONE,
        )
        kind, owner_id = budget.scope
        spent = RequestRecord.objects.filter(
            **{_RECORD_SCOPE[kind]: owner_id},
            time__gte=dt.datetime.fromtimestamp(start, dt.UTC),
            time__lt=dt.datetime.fromtimestamp(end, dt.UTC),
        ).aggregate(total=Sum("cost_micros", default=0))["total"]
        result.append(
            BudgetSpend(
                budget=budget,
                period_start=dt.datetime.fromtimestamp(start, dt.UTC),
                period_end=dt.datetime.fromtimestamp(end, dt.UTC),
                spent_micros=spent,
            )
        )
    return result

"""Hourly and daily rollups of the request log: incremental, idempotent.

**What is a rollup row.** One :class:`~governance.models.UsageRollup` per
bucket (an hour, or a UTC day), per team, and per value of one dimension:
the team as a whole, each key, the customer, each provider, each model.
Rows grow with the number of keys and models in use, not with traffic (at
ten million generated records over 30 days: a few hundred rows an hour).
A series filtered by team and split or filtered by at most one other
dimension is a sum of rows of that dimension; anything else (a status
filter, a key filter split by model, ...) reads the request log.

**Percentiles.** Latencies and times to first token are kept as histograms
that merge by adding counts: values under 64 ms exactly, larger ones in
bins 2% wide (:data:`BOUNDS`). A percentile read from a merged histogram is
the bins' midpoints interpolated as ``percentile_cont`` does, within 1% of
the exact value. Exact per-row percentiles would not add up across teams or
hours; these do, so a day is the merge of its 24 hours and the whole
gateway's p95 the merge of every team's rows.

**Incremental.** The job remembers the highest request-record id it has
rolled up (a :class:`~governance.models.JobCursor`), not a request time:
the usage drain may insert, now, a record of a request made an hour ago,
and its hour must be recomputed. Each run finds the hours touched by the
records inserted since (plus :data:`OVERLAP_IDS` before on PostgreSQL, for
inserts that committed out of id order), and recomputes each touched hour
whole from the request log, and moves its day's rows by the difference.

**Up to the cursor, exactly.** An hour is recomputed from the records with
ids up to the step's end, so the rollups hold the records up to the cursor,
no more: a reader adds the few records above it from the request log
(:func:`rollup_cursor`) and sees every request up to now.

**Idempotent.** An hour's rows are deleted and rewritten from what the
request log holds, and its day's rows moved by the difference, in one
transaction: running twice, or after a crash between the rewrite and the
cursor's update, gives the same rows (a day stays exactly the sum of its
hours: integer counts and bins).
Hours older than the retention cutoff are never recomputed: their raw
records may already be pruned (``governance.retention``).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Func, IntegerField, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, NullIf, TruncHour
from django.utils import timezone

from governance.models import (
    JobCursor,
    RequestRecord,
    RollupDimension,
    RollupGranularity,
    UsageRollup,
)

logger = logging.getLogger(__name__)

CURSOR = "usage_rollup"
# Ids re-read below the cursor on every run that finds new records, on
# PostgreSQL: a batch insert that committed after a later one (concurrent
# drains, each batch at most a few thousand rows) is still seen. SQLite runs
# one write transaction at a time, so its ids become visible in order.
OVERLAP_IDS = 10_000
# Records read per step; each step is one cursor update.
STEP_IDS = 200_000

SUMS = ("input_tokens", "output_tokens", "cached_tokens", "cost_micros")
# In the order hour_rows' totals query gives them.
COUNTS = ("requests", "errors", "latency_ms_total", *SUMS)


# Read once per hour at this grain, then folded into each dimension.
GRAIN = ("team_id", "key_id", "customer_id", "provider", "model_name")


def _model_name() -> Any:
    """The model a record counts for: the one that served, or the one asked for."""
    return Coalesce(NullIf("served_model", Value("")), "requested_model")


def _dimension_values(grain: tuple) -> list[tuple[str, str]]:
    """Each dimension's value for one combination of ``GRAIN``."""
    _, key_id, customer_id, provider, model = grain
    return [
        (RollupDimension.TEAM, ""),
        (RollupDimension.KEY, "" if key_id is None else str(key_id)),
        (RollupDimension.CUSTOMER, "" if customer_id is None else str(customer_id)),
        (RollupDimension.PROVIDER, provider),
        (RollupDimension.MODEL, model or ""),
    ]


EXACT_BELOW = 64
# Lower bounds of the 2%-wide bins from 64 ms to over an hour.
BOUNDS: tuple[int, ...] = tuple(sorted({int(-(-EXACT_BELOW * 1.02**k // 1)) for k in range(560)}))


def histogram_bin(value: int) -> int:
    """The histogram bin of a latency in milliseconds."""
    if value < EXACT_BELOW:
        return max(0, value)
    return EXACT_BELOW - 1 + bisect.bisect_right(BOUNDS, value)


def bin_value(index: int) -> float:
    """The value a bin stands for: itself below 64 ms, the middle of its range above."""
    if index < EXACT_BELOW:
        return float(index)
    position = index - EXACT_BELOW
    low = BOUNDS[position]
    high = BOUNDS[position + 1] - 1 if position + 1 < len(BOUNDS) else low
    return (low + high) / 2


Histogram = dict[int, int]


def histogram_merge(histograms: Iterable[dict[Any, int]]) -> Histogram:
    """Counts added bin by bin (keys may be ints or the strings JSON stores)."""
    merged: Histogram = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[int(index)] = merged.get(int(index), 0) + count
    return merged


def histogram_percentile(histogram: Histogram, fraction: float) -> float | None:
    """The ``fraction`` percentile, interpolated between ranks like ``percentile_cont``."""
    total = sum(histogram.values())
    if not total:
        return None
    position = fraction * (total - 1)
    low_rank, high_rank = int(position), min(int(position) + 1, total - 1)
    low = high = None
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if low is None and seen > low_rank:
            low = bin_value(index)
        if seen > high_rank:
            high = bin_value(index)
            break
    assert low is not None and high is not None
    return low + (high - low) * (position - low_rank)


def _stored(histogram: Histogram) -> dict[str, int]:
    return {str(index): histogram[index] for index in sorted(histogram)}


# --- computing buckets from the request log ------------------------------------------


class _LogBin(Func):
    """The histogram bin computed by PostgreSQL (``width_bucket`` over :data:`BOUNDS`)."""

    template = (
        f"CASE WHEN %(expressions)s < {EXACT_BELOW} THEN %(expressions)s "
        f"ELSE {EXACT_BELOW - 1} + width_bucket(%(expressions)s, "
        f"ARRAY[{','.join(map(str, BOUNDS))}]) END"
    )
    output_field = IntegerField()


def _histograms(records: Any, column: str) -> dict[tuple, Histogram]:
    """Per dimension, team and value, the histogram of ``column`` (nulls left out).

    PostgreSQL bins in the query; elsewhere the query counts each distinct
    value and the bins are taken here (the same bins either way).
    """
    in_database = connection.vendor == "postgresql"
    present = records.filter(**{f"{column}__isnull": False}).order_by()
    binned = present.annotate(
        model_name=_model_name(), measure=_LogBin(F(column)) if in_database else F(column)
    )
    rows = binned.values_list(*GRAIN, "measure").annotate(n=Count("id"))
    result: dict[tuple, Histogram] = {}
    for *grain, measure, count in rows:
        index = measure if in_database else histogram_bin(measure)
        for dimension, value in _dimension_values(tuple(grain)):
            histogram = result.setdefault((dimension, grain[0], value), {})
            histogram[index] = histogram.get(index, 0) + count
    return result


def hour_rows(start: dt.datetime, up_to_id: int | None = None) -> list[UsageRollup]:
    """The hourly rollup rows of the hour starting at ``start``, from the request log.

    Three queries (totals, latencies, times to first token) at the grain of
    team, key, customer, provider and model, folded here into each dimension.
    """
    records = RequestRecord.objects.filter(time__gte=start, time__lt=start + dt.timedelta(hours=1))
    if up_to_id is not None:
        records = records.filter(id__lte=up_to_id)
    totals = (
        records.order_by()
        .annotate(model_name=_model_name())
        .values_list(*GRAIN)
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status__gte=400)),
            latency_ms_total=Sum("latency_ms"),
            **{name: Sum(name) for name in SUMS},
        )
    )
    folded: dict[tuple, dict[str, int]] = {}
    width = len(GRAIN)
    for row_values in totals:
        grain, counts = row_values[:width], row_values[width:]
        for dimension, value in _dimension_values(grain):
            row = folded.setdefault((dimension, grain[0], value), dict.fromkeys(COUNTS, 0))
            for name, count in zip(COUNTS, counts, strict=True):
                row[name] += count or 0
    latencies = _histograms(records, "latency_ms")
    ttfts = _histograms(records, "ttft_ms")
    return [
        UsageRollup(
            granularity=RollupGranularity.HOUR,
            bucket=start,
            dimension=dimension,
            team_id=team_id,
            value=value,
            **counts,
            latency_histogram=_stored(latencies.get((dimension, team_id, value), {})),
            ttft_histogram=_stored(ttfts.get((dimension, team_id, value), {})),
        )
        for (dimension, team_id, value), counts in folded.items()
    ]


def _histogram_add(base: dict[Any, int], plus: dict[Any, int], minus: dict[Any, int]) -> Histogram:
    result = histogram_merge([base, plus])
    for index, count in minus.items():
        left = result.get(int(index), 0) - count
        if left:
            result[int(index)] = left
        else:
            result.pop(int(index), None)
    return result


def _group(row: UsageRollup) -> tuple:
    return (row.team_id, row.dimension, row.value)


def _day_update(day: dt.datetime, old: list[UsageRollup], new: list[UsageRollup]) -> None:
    """Move the day's rows by what one of its hours changed (new minus old).

    Counts and histogram bins are integers, so the day stays exactly the
    sum of its hours, at the cost of reading one hour's rows, not 24.
    """
    rows = {
        _group(row): row
        for row in UsageRollup.objects.filter(granularity=RollupGranularity.DAY, bucket=day)
    }
    before = {_group(row): row for row in old}
    after = {_group(row): row for row in new}
    changed: list[UsageRollup] = []
    created: list[UsageRollup] = []
    for group in before.keys() | after.keys():
        was, now = before.get(group), after.get(group)
        row = rows.get(group)
        if row is None:
            row = UsageRollup(
                granularity=RollupGranularity.DAY,
                bucket=day,
                team_id=group[0],
                dimension=group[1],
                value=group[2],
            )
            created.append(row)
        else:
            changed.append(row)
        for name in COUNTS:
            delta = (getattr(now, name) if now else 0) - (getattr(was, name) if was else 0)
            setattr(row, name, getattr(row, name) + delta)
        for name in ("latency_histogram", "ttft_histogram"):
            histogram = _histogram_add(
                getattr(row, name), getattr(now, name, {}) or {}, getattr(was, name, {}) or {}
            )
            setattr(row, name, _stored(histogram))
    # Rewritten whole: one DELETE and one INSERT beat hundreds of row updates.
    UsageRollup.objects.filter(pk__in=[row.pk for row in changed]).delete()
    for row in changed:
        row.pk = None
    kept = [row for row in (*changed, *created) if row.requests]
    UsageRollup.objects.bulk_create(kept, batch_size=1000)


def hour_rewrite(start: dt.datetime, up_to_id: int | None = None) -> int:
    """Replace an hour's rollup rows by a recomputation from the request log, and move
    its day's rows by the difference, in one transaction; returns the number of rows."""
    rows = hour_rows(start, up_to_id)
    with transaction.atomic():
        existing = UsageRollup.objects.filter(granularity=RollupGranularity.HOUR, bucket=start)
        old = list(existing)
        existing.delete()
        UsageRollup.objects.bulk_create(rows, batch_size=1000)
        _day_update(_day(start), old, rows)
    return len(rows)


# --- the incremental job ---------------------------------------------------------------


@dataclass(frozen=True)
class RollupRun:
    """What one run did."""

    records_seen_up_to: int
    hours: int
    days: int
    skipped: bool = False


def _day(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def retention_cutoff(now: dt.datetime | None = None) -> dt.datetime | None:
    """Records older than this are pruned (None: kept forever)."""
    days = settings.GATEWAY_LOG_RETENTION_DAYS
    if days <= 0:
        return None
    return (now or timezone.now()) - dt.timedelta(days=days)


@contextlib.contextmanager
def job_lock(name: str) -> Iterator[bool]:
    """Whether this process may run the job ``name`` now (one at a time cluster-wide).

    PostgreSQL: a session advisory lock, held for the block. SQLite (one
    machine): every write transaction is already exclusive; runs that
    overlap write the same rows.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    lock_id = zlib.crc32(f"gateway-job:{name}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        taken = cursor.fetchone()[0]
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])


def usage_rollup(*, time_budget: float = 120.0) -> RollupRun:
    """Roll up the records inserted since the last run (see the module's docstring).

    Works in steps of :data:`STEP_IDS` records, each ending with the
    cursor's update, and stops after the first step that ends past
    ``time_budget`` seconds: a backlog is caught up over several runs.
    """
    with job_lock(CURSOR) as taken:
        if not taken:
            return RollupRun(records_seen_up_to=0, hours=0, days=0, skipped=True)
        cursor, _ = JobCursor.objects.get_or_create(name=CURSOR)
        newest = RequestRecord.objects.aggregate(newest=Max("id"))["newest"] or 0
        started = time.monotonic()
        hours_done = days_done = 0
        position = cursor.position
        overlap = OVERLAP_IDS if connection.vendor == "postgresql" else 0
        low = max(0, position - overlap)
        while position < newest:
            # Ids have gaps (deleted or pruned records, a fresh sequence): step from the next one.
            following = RequestRecord.objects.filter(id__gt=low).aggregate(first=Min("id"))["first"]
            high = min(newest, max(position, (following or newest) - 1) + STEP_IDS)
            hours = _touched_hours(low, high)
            for hour in hours:
                hour_rewrite(hour, high)
            hours_done += len(hours)
            days_done += len({_day(hour) for hour in hours})
            position = low = high
            JobCursor.objects.filter(pk=cursor.pk).update(
                position=position, updated_at=timezone.now()
            )
            if time.monotonic() - started >= time_budget:
                break  # at least one step per run, then the next run goes on
        if hours_done:
            logger.info(
                "usage rollup: %d hours, %d days, records up to id %d",
                hours_done,
                days_done,
                position,
            )
        return RollupRun(records_seen_up_to=position, hours=hours_done, days=days_done)


def rollup_cursor() -> int:
    """The id up to which the request log is in the rollups."""
    position = JobCursor.objects.filter(name=CURSOR).values_list("position", flat=True).first()
    return position or 0


def _touched_hours(low: int, high: int) -> list[dt.datetime]:
    """The hours holding records with ids in ``(low, high]``, oldest first.

    Hours older than the retention cutoff are left alone (their records may
    be partly pruned; their rollups stay as they were).
    """
    hours = (
        RequestRecord.objects.filter(id__gt=low, id__lte=high)
        .order_by()
        .annotate(hour=TruncHour("time", tzinfo=dt.UTC))
        .values_list("hour", flat=True)
        .distinct()
    )
    cutoff = retention_cutoff()
    return sorted(hour for hour in hours if cutoff is None or hour >= cutoff)

"""Hourly and daily rollups of the request log: incremental, additive, exact.

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
gateway's p95 the merge of every team's rows. A row stores a histogram as a
JSON array, the first bin used and then the count of every bin up to the
last one used (:data:`Packed`), read with slices rather than a loop per
bin; or, when it uses fewer than half the bins of that span (an hour of a
few requests), as the object of the bins used and their counts, which is
then smaller (:func:`histogram_stored_form`; docs/ledger.md).

**Up to the cursor, exactly.** The rollups hold exactly the records with ids
up to the job's cursor (a :class:`~governance.models.JobCursor`), each once;
a reader adds the records above it from the request log
(:func:`rollup_cursor`) and sees every request up to now.

**A safe frontier.** Ids are drawn from a sequence before the inserting
transaction commits, so on PostgreSQL a lower id can become visible after a
higher one. Every transaction that writes records holds an advisory lock
shared (``governance.ledger.record_writers_lock``); the job takes it
exclusively for an instant and reads the highest id: no writer is open
then, so every id up to it is committed or will never exist, and later
writers draw higher ids (:func:`records_frontier`). SQLite has one writer
at a time, committing in id order.

**Additive.** Each step aggregates the records with ids in (cursor,
step end] — sums in SQL at the grain of hour, team, key, customer, provider
and model, histograms from the latency values — and adds them to the hourly
rows and their days' rows (creating those that do not exist), moving the
cursor in the same transaction. The work is proportional to the new
records; a late record (an old hour) simply adds to its hour. A crash
before the commit leaves nothing; the compare-and-set on the cursor makes a
second run (or an overlapping one) skip a step already merged, so every
record is counted exactly once. Additive rows cannot heal themselves:
:func:`rollups_rebuild` (``manage.py rebuild_rollups``) recomputes days
from the request log.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from operator import add
from typing import Any

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Aggregate, Count, Max, Min, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Coalesce, NullIf, TruncHour
from django.utils import timezone

from governance.ledger import RECORD_WRITERS_LOCK
from governance.models import (
    JobCursor,
    RequestRecord,
    RollupDimension,
    RollupGranularity,
    UsageRollup,
)

logger = logging.getLogger(__name__)

CURSOR = "usage_rollup"
# Records read per step; each step is one transaction ending with the cursor.
STEP_IDS = 200_000
# How long the job waits for open record-writing transactions to end before
# it gives up fixing a frontier this run. New writers queue behind its
# request meanwhile, so this bounds their wait too.
FRONTIER_WAIT_MS = 2_000

SUMS = ("input_tokens", "output_tokens", "cached_tokens", "cost_micros")
# In the order the aggregation query gives them.
COUNTS = ("requests", "errors", "latency_ms_total", *SUMS)


# Aggregated at this grain (per hour), then folded into each dimension.
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
# A histogram as a row stores it: the first bin used, then the count of each
# bin from it to the last bin used (zeros between); ``[]`` when empty.
Packed = list[int]
# ... or, sparse, the bins used and their counts: {"66": 1, "70": 2}.
Stored = Packed | dict[str, int]


def histogram_pack(histogram: Histogram) -> Packed:
    """A histogram (counts by bin) in the stored form, :data:`Packed`."""
    used = [index for index, count in histogram.items() if count]
    if not used:
        return []
    first, last = min(used), max(used)
    return [first, *(histogram.get(index, 0) for index in range(first, last + 1))]


def histogram_unpack(stored: Stored) -> Histogram:
    """The counts by bin of a stored histogram, of either form (bins counting nothing left out)."""
    if isinstance(stored, dict):
        return {int(index): count for index, count in stored.items() if count}
    if not stored:
        return {}
    first = stored[0]
    return {first + offset: count for offset, count in enumerate(stored[1:]) if count}


def histogram_stored_form(histogram: Histogram) -> Stored:
    """What a row stores: :data:`Packed`, or the object of the bins used when that is smaller.

    Packed costs a number for every bin of its span, the object a key and a
    number for each bin used: the object is chosen when fewer than half of
    the span's bins are used (migration 0007 chooses the same way).
    """
    packed = histogram_pack(histogram)
    used = len(packed) - 1 - packed[1:].count(0) if packed else 0
    if len(packed) - 1 > 2 * used:
        return {str(index): histogram[index] for index in sorted(histogram) if histogram[index]}
    return packed


def histogram_merge(histograms: Iterable[Stored | dict[Any, int]]) -> Histogram:
    """Counts added bin by bin, of stored histograms or of counts by bin."""
    merged: Histogram = {}
    for histogram in histograms:
        counts = histogram_unpack(histogram) if isinstance(histogram, list) else histogram
        for index, count in counts.items():
            merged[int(index)] = merged.get(int(index), 0) + count
    return merged


def histogram_percentile(histogram: Histogram, fraction: float) -> float | None:
    """The ``fraction`` percentile, interpolated between ranks like ``percentile_cont``."""
    return stored_histograms_percentiles([histogram_pack(histogram)], (fraction,))[0]


BIN_COUNT = EXACT_BELOW + len(BOUNDS)
_BIN_VALUES = tuple(bin_value(index) for index in range(BIN_COUNT))


def stored_histograms_percentiles(
    histograms: list[Stored], fractions: Iterable[float]
) -> list[float | None]:
    """Each ``fraction`` percentile of the merge of stored histograms (of either form).

    Packed ones are handled by C-level calls (slices, ``map``,
    ``accumulate``), no Python loop per bin: a month split by key reads
    thousands of rows. One packed histogram (a point that is one row, e.g. a
    key's day) is read as it is; several are added into one count per bin,
    objects bin by bin (they have few).
    """
    used = [histogram for histogram in histograms if histogram]
    if len(used) == 1 and type(used[0]) is list:
        first = used[0][0]
        running = list(accumulate(used[0][1:]))
        return _percentiles(running, lambda offset: _BIN_VALUES[first + offset], fractions)
    counts = [0] * BIN_COUNT
    for histogram in used:
        if type(histogram) is list:
            first, end = histogram[0], histogram[0] + len(histogram) - 1
            counts[first:end] = map(add, counts[first:end], histogram[1:])
            continue
        for index, count in histogram.items():
            counts[int(index)] += count
    return _percentiles(list(accumulate(counts)), _BIN_VALUES.__getitem__, fractions)


def _percentiles(
    running: list[int], value_at: Callable[[int], float], fractions: Iterable[float]
) -> list[float | None]:
    """Percentiles from the running sum of bin counts and each bin's value.

    A binary search per rank finds the bins holding the values of the two
    (0-based) ranks around the fraction: the first whose running sum passes
    the rank.
    """
    total = running[-1] if running else 0
    if not total:
        return [None for _ in fractions]
    answers: list[float | None] = []
    for fraction in fractions:
        position = fraction * (total - 1)
        low_rank = int(position)
        high_rank = min(low_rank + 1, total - 1)
        low = value_at(bisect.bisect_right(running, low_rank))
        high = value_at(bisect.bisect_right(running, high_rank))
        answers.append(low + (high - low) * (position - low_rank))
    return answers


# --- aggregating records ------------------------------------------------------------


class _Values(Aggregate):
    """Every value of a column in a group: an array on PostgreSQL, a comma list on SQLite."""

    function = "ARRAY_AGG"
    output_field = TextField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return super().as_sql(compiler, connection, function="GROUP_CONCAT", **extra)


def _values(raw: Any) -> list[int]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [int(value) for value in raw.split(",")]
    return raw


@dataclass
class Delta:
    """What a set of records adds to one rollup row: counts in :data:`COUNTS`' order, bins."""

    counts: list[int]
    latency: Counter[int]
    ttft: Counter[int]


# (granularity, bucket, team_id, dimension, value)
RowKey = tuple[str, dt.datetime, int | None, str, str]


def records_deltas(records: QuerySet[RequestRecord]) -> dict[RowKey, Delta]:
    """What ``records`` add to each hourly and daily rollup row.

    One query: sums and counts per hour and ``GRAIN`` in the database, each
    group's latencies and times to first token as a list, binned here and
    counted once per row (binning in SQL and grouping by the bin returned as
    many rows as there are records, and was slower: docs/ledger.md).
    """
    groups = (
        records.order_by()
        .annotate(hour=TruncHour("time", tzinfo=dt.UTC), model_name=_model_name())
        .values_list("hour", *GRAIN)
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status__gte=400)),
            latency_ms_total=Sum("latency_ms"),
            **{name: Sum(name) for name in SUMS},
            latencies=_Values("latency_ms"),
            ttfts=_Values("ttft_ms", filter=Q(ttft_ms__isnull=False)),
        )
    )
    counts: dict[RowKey, list[int]] = {}
    latencies: dict[RowKey, list[int]] = {}
    ttfts: dict[RowKey, list[int]] = {}
    days: dict[dt.datetime, dt.datetime] = {}
    width = 1 + len(GRAIN)
    for row in groups:
        hour, grain = row[0], row[1:width]
        added = [count or 0 for count in row[width : width + len(COUNTS)]]
        latency = list(map(histogram_bin, _values(row[-2])))
        ttft = list(map(histogram_bin, _values(row[-1])))
        day = days.get(hour) or days.setdefault(hour, _day(hour))
        for dimension, value in _dimension_values(grain):
            for key in (
                (RollupGranularity.HOUR.value, hour, grain[0], dimension, value),
                (RollupGranularity.DAY.value, day, grain[0], dimension, value),
            ):
                total = counts.get(key)
                if total is None:
                    counts[key], latencies[key], ttfts[key] = list(added), list(latency), list(ttft)
                    continue
                for index, count in enumerate(added):
                    total[index] += count
                latencies[key].extend(latency)
                ttfts[key].extend(ttft)
    return {
        key: Delta(total, Counter(latencies[key]), Counter(ttfts[key]))
        for key, total in counts.items()
    }


COLUMNS = ("granularity", "bucket", "team_id", "dimension", "value", *COUNTS)
HISTOGRAMS = ("latency_histogram", "ttft_histogram")


def _histogram_text(stored: Stored | None, added: Counter[int]) -> str:
    """A stored histogram plus new counts, as the JSON text stored (:data:`Stored`)."""
    merged = histogram_merge([stored or [], added])
    return orjson.dumps(histogram_stored_form(merged)).decode()


def rollups_add(deltas: dict[RowKey, Delta]) -> None:
    """Add ``deltas`` to the stored rows, creating the rows that do not exist.

    Run inside the caller's transaction. The rows touched are rewritten
    whole: one DELETE and one bulk INSERT (``COPY`` on PostgreSQL) beat
    hundreds of row updates.
    """
    if not deltas:
        return
    where = Q()
    for granularity, bucket in {(granularity, bucket) for granularity, bucket, *_ in deltas}:
        where |= Q(granularity=granularity, bucket=bucket)
    existing: dict[RowKey, tuple] = {}
    for pk, *values in UsageRollup.objects.filter(where).values_list("pk", *COLUMNS, *HISTOGRAMS):
        key = tuple(values[:5])
        if key in deltas:
            existing[key] = (pk, *values)  # type: ignore[index]
    rows = []
    for key, delta in deltas.items():
        old = existing.get(key)
        counts = (
            delta.counts
            if old is None
            else [a + b for a, b in zip(old[6:-2], delta.counts, strict=True)]
        )
        rows.append(
            (
                *key,
                *counts,
                _histogram_text(old and old[-2], delta.latency),
                _histogram_text(old and old[-1], delta.ttft),
            )
        )
    UsageRollup.objects.filter(pk__in=[old[0] for old in existing.values()]).delete()
    _rows_insert(rows)


def _rows_insert(rows: list[tuple]) -> None:
    """Insert rollup rows given as :data:`COLUMNS` and :data:`HISTOGRAMS` (JSON text)."""
    table = UsageRollup._meta.db_table
    columns = ", ".join((*COLUMNS, *HISTOGRAMS))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: the bulk INSERT's arrays of JSON text cost more to build than to insert.
            copying = cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN")
            # (psycopg's own cursor: its errors are wrapped here as Django's are.)
            with connection.wrap_database_errors, copying as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt_time = connection.ops.adapt_datetimefield_value
        placeholders = ", ".join(["%s"] * (len(COLUMNS) + len(HISTOGRAMS)))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",  # noqa: S608
            [(row[0], adapt_time(row[1]), *row[2:]) for row in rows],
        )


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
    machine): no lock; the rollup's steps compare and set the cursor, so an
    overlapping run merges nothing twice.
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


def records_frontier() -> int | None:
    """The highest record id below which no record can still appear (None: not now).

    PostgreSQL: the writers' lock taken exclusively, in a short transaction
    of its own, then the highest id read (by a statement of its own, so its
    snapshot is taken once the lock is held); None if open writers held the
    lock for longer than :data:`FRONTIER_WAIT_MS`. SQLite: the highest id.
    """
    table = RequestRecord._meta.db_table
    if connection.vendor != "postgresql":
        return RequestRecord.objects.aggregate(newest=Max("id"))["newest"] or 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{FRONTIER_WAIT_MS}ms"])
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RECORD_WRITERS_LOCK])
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
            cursor.execute(f"SELECT max(id) FROM {table}")  # noqa: S608
            return cursor.fetchone()[0] or 0
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        return None


def _step(cursor_pk: int, low: int, high: int) -> dict[RowKey, Delta] | None:
    """Merge the records with ids in (low, high] and move the cursor, in one transaction.

    The deltas are read first, outside it (those records are committed and
    nothing changes them); the transaction starts with a compare-and-set of
    the cursor, so a step that another run already merged is not merged
    again (None), and on SQLite the write lock is held before the rows are
    read.
    """
    deltas = records_deltas(RequestRecord.objects.filter(id__gt=low, id__lte=high))
    with transaction.atomic():
        moved = JobCursor.objects.filter(pk=cursor_pk, position=low).update(
            position=high, updated_at=timezone.now()
        )
        if not moved:
            return None
        rollups_add(deltas)
    return deltas


def usage_rollup(*, time_budget: float = 120.0) -> RollupRun:
    """Roll up the records inserted since the last run (see the module's docstring).

    Works in steps of :data:`STEP_IDS` ids up to the frontier, each its own
    transaction ending with the cursor's update, and stops after the first
    step that ends past ``time_budget`` seconds: a backlog is caught up over
    several runs.
    """
    with job_lock(CURSOR) as taken:
        if not taken:
            return RollupRun(records_seen_up_to=0, hours=0, days=0, skipped=True)
        cursor, _ = JobCursor.objects.get_or_create(name=CURSOR)
        position = cursor.position
        frontier = records_frontier()
        if frontier is None:
            logger.warning("usage rollup: record writers held the frontier lock; next run")
            return RollupRun(records_seen_up_to=position, hours=0, days=0, skipped=True)
        started = time.monotonic()
        hours: set[dt.datetime] = set()
        while position < frontier:
            # Ids have gaps (deleted or pruned records, a fresh sequence): step from the next one.
            following = RequestRecord.objects.filter(id__gt=position).aggregate(first=Min("id"))
            first = following["first"] or frontier
            high = min(frontier, max(position, first - 1) + STEP_IDS)
            deltas = _step(cursor.pk, position, high)
            if deltas is None:
                logger.warning("usage rollup: the cursor moved under this run; stopping")
                position = rollup_cursor()
                break
            hours.update(key[1] for key in deltas if key[0] == RollupGranularity.HOUR)
            position = high
            if time.monotonic() - started >= time_budget:
                break  # at least one step per run, then the next run goes on
        days = {_day(hour) for hour in hours}
        if hours:
            logger.info(
                "usage rollup: %d hours, %d days, records up to id %d",
                len(hours),
                len(days),
                position,
            )
        return RollupRun(records_seen_up_to=position, hours=len(hours), days=len(days))


@contextlib.contextmanager
def rollups_snapshot() -> Iterator[None]:
    """One view of the cursor, the rollup rows and the records for a read of all three.

    Each statement sees its own snapshot otherwise: a step committing between
    the read of the cursor and the read of the rows would be counted twice
    (in the rows, and among the records above the cursor read). PostgreSQL:
    a read-only, repeatable-read transaction (already inside a transaction:
    that one's). SQLite: a deferred transaction of its own, begun by hand
    (Django's begin immediately, taking the write lock, too heavy for a
    read); in WAL mode it reads one snapshot from its first statement on,
    and writers go on meanwhile.
    """
    if connection.in_atomic_block or connection.vendor not in ("postgresql", "sqlite"):
        yield
        return
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")  # it only read
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def rollup_cursor() -> int:
    """The id up to which the request log is in the rollups.

    Read it in :func:`rollups_snapshot`, with the rows and the records above it.
    """
    position = JobCursor.objects.filter(name=CURSOR).values_list("position", flat=True).first()
    return position or 0


# --- rebuilding from the request log -----------------------------------------------------


@dataclass(frozen=True)
class RebuildRun:
    """What a rebuild did."""

    days: int
    records_seen_up_to: int
    skipped: bool = False


def rollups_rebuild(*, since: dt.date | None = None) -> RebuildRun:
    """Recompute the rollups of each UTC day from ``since`` on from the request log.

    Each day in one transaction that first takes the cursor's row (the
    incremental job waits), deletes the day's hourly and daily rows and adds
    the day's records up to the cursor back: the invariant (exactly the
    records up to the cursor) holds after each day, so a rebuild can stop
    anywhere and be run again. Then the usual catch-up adds the rest.
    ``since`` defaults to the first day (of records) whose records are all
    still kept; an earlier day is refused (ValueError): records past the
    retention cutoff may be pruned, and their rows are all that is left.
    """
    first_kept = retention_cutoff()
    with job_lock(CURSOR) as taken:
        if not taken:
            return RebuildRun(days=0, records_seen_up_to=0, skipped=True)
        cursor, _ = JobCursor.objects.get_or_create(name=CURSOR)
        span = RequestRecord.objects.aggregate(first=Min("time"), last=Max("time"))
        if span["first"] is None:
            return RebuildRun(days=0, records_seen_up_to=cursor.position)
        # The first day all of whose records are still kept.
        whole = None if first_kept is None else _day(first_kept) + dt.timedelta(days=1)
        if since is None:
            day = max(_day(span["first"]), whole or _day(span["first"]))
        else:
            day = max(_day(span["first"]), dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC))
            if whole is not None and day < whole:
                raise ValueError(
                    f"records before {first_kept:%Y-%m-%d %H:%M} UTC may be pruned: "
                    f"rebuild from {whole:%Y-%m-%d} on"
                )
        rebuilt = 0
        while day <= span["last"]:
            end = day + dt.timedelta(days=1)
            with transaction.atomic():
                position = JobCursor.objects.select_for_update().get(pk=cursor.pk).position
                UsageRollup.objects.filter(
                    Q(granularity=RollupGranularity.HOUR, bucket__gte=day, bucket__lt=end)
                    | Q(granularity=RollupGranularity.DAY, bucket=day)
                ).delete()
                records = RequestRecord.objects.filter(time__gte=day, time__lt=end)
                rollups_add(records_deltas(records.filter(id__lte=position)))
            rebuilt += 1
            day = end
    caught_up = usage_rollup(time_budget=float("inf"))
    return RebuildRun(days=rebuilt, records_seen_up_to=caught_up.records_seen_up_to)

"""Rollups equal a recomputation from the request log: after late records, after re-runs.

The expected rows are computed here from the records with plain Python
(sums per hour or day and per owner, provider and model; latency
histograms by ``histogram_bin``), independently of the job's queries.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.test import override_settings

from governance import rollups
from governance.generator import Shape, generate
from governance.ledger import insert_records
from governance.models import JobCursor, RequestRecord, UsageRollup
from governance.rollups import (
    BOUNDS,
    bin_value,
    histogram_bin,
    histogram_merge,
    histogram_percentile,
    rollups_rebuild,
    usage_rollup,
)
from governance.selectors import percentile_cont
from tests.ledger_helpers import (
    assert_rollups_match_the_records,
    ledger_entry,
    records_by_point,
    stored_rows,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 5, 12, 30, tzinfo=dt.UTC)
DIMENSIONS = ("team", "key", "customer", "provider", "model")


def some_records(count: int = 600, days: float = 3, seed: int = 1) -> None:
    generate(Shape(count=count, days=days, keys=5, teams=3, customers=2, until=NOW, seed=seed))


def test_hourly_and_daily_rollups_equal_a_recomputation_from_the_records():
    some_records()

    run = usage_rollup()

    assert run.hours > 24 and run.days >= 3
    assert_rollups_match_the_records()


def test_a_late_record_of_an_old_hour_is_rolled_up_on_the_next_run():
    some_records()
    usage_rollup()
    before = stored_rows("hour")
    old_hour = NOW - dt.timedelta(days=2, hours=5)
    # Inserted now (the drain after an outage), for a request made two days ago.
    late = ledger_entry("late-1", old_hour + dt.timedelta(minutes=7), key_id=999, cost_micros=1234)
    insert_records([{**late, "latency_ms": 321, "ttft_ms": None}])

    usage_rollup()

    assert_rollups_match_the_records()
    changed = {key for key, row in stored_rows("hour").items() if before.get(key) != row}
    assert {key[0] for key in changed} == {old_hour.replace(minute=0, second=0, microsecond=0)}


def test_running_again_rebuilding_or_starting_from_scratch_writes_the_same_rows():
    some_records()
    usage_rollup()
    first = (stored_rows("hour"), stored_rows("day"))

    usage_rollup()  # nothing new
    assert (stored_rows("hour"), stored_rows("day")) == first
    rollups_rebuild()
    assert (stored_rows("hour"), stored_rows("day")) == first
    UsageRollup.objects.all().delete()
    JobCursor.objects.all().delete()
    usage_rollup()

    assert (stored_rows("hour"), stored_rows("day")) == first


def test_a_backlog_is_caught_up_in_steps_each_moving_the_cursor(monkeypatch):
    monkeypatch.setattr(rollups, "STEP_IDS", 100)
    some_records(count=450)

    run = usage_rollup()

    newest = RequestRecord.objects.order_by("-id").values_list("id", flat=True).first()
    assert run.records_seen_up_to == newest
    assert JobCursor.objects.get(name=rollups.CURSOR).position == newest
    assert_rollups_match_the_records()


def test_a_run_out_of_time_stops_at_a_step_and_the_next_run_goes_on(monkeypatch):
    monkeypatch.setattr(rollups, "STEP_IDS", 100)
    some_records(count=450)

    newest = RequestRecord.objects.order_by("-id").values_list("id", flat=True).first()

    first = usage_rollup(time_budget=0.0)
    assert 0 < first.records_seen_up_to < newest
    runs = 1
    while usage_rollup(time_budget=0.0).records_seen_up_to < newest:
        runs += 1
    assert runs >= 3

    assert_rollups_match_the_records()


@override_settings(GATEWAY_LOG_RETENTION_DAYS=1)
def test_a_late_record_of_an_hour_past_the_retention_period_adds_to_its_rollups():
    some_records(count=300, days=3)
    with override_settings(GATEWAY_LOG_RETENTION_DAYS=0):
        usage_rollup()
    before = stored_rows("hour")
    # A late record for an hour the retention has (or could have) pruned:
    # nothing is recomputed, so it adds to what the rows hold.
    late = NOW - dt.timedelta(days=2)
    insert_records([{"request_id": "too-late", "time": late.timestamp(), "status": 200}])

    usage_rollup()

    hour = late.replace(minute=0, second=0, microsecond=0)
    changed = {key for key, row in stored_rows("hour").items() if before.get(key) != row}
    assert changed == {(hour, None, dimension, "") for dimension in DIMENSIONS}
    assert stored_rows("hour")[(hour, None, "team", "")]["requests"] == 1
    assert_rollups_match_the_records()


def test_percentiles_from_histograms_are_within_one_percent_of_the_exact_ones():
    some_records(count=2000, days=0.5)
    usage_rollup()
    latencies = sorted(RequestRecord.objects.values_list("latency_ms", flat=True))
    merged = histogram_merge(
        UsageRollup.objects.filter(granularity="hour").values_list("latency_histogram", flat=True)
    )

    for fraction in (0.5, 0.95, 0.99):
        exact = percentile_cont(latencies, fraction)
        assert histogram_percentile(merged, fraction) == pytest.approx(exact, rel=0.01)


def test_small_latencies_are_exact_and_larger_ones_stand_within_one_percent():
    assert [histogram_bin(v) for v in range(64)] == list(range(64))
    assert histogram_percentile({10: 1, 20: 1}, 0.5) == 15
    assert BOUNDS[0] == 64 and BOUNDS[-1] > 3_600_000
    for low, high in itertools.pairwise(BOUNDS):
        index = histogram_bin(low)
        assert histogram_bin(high - 1) == index and histogram_bin(high) == index + 1
        for value in (low, high - 1):
            assert abs(bin_value(index) - value) <= 0.01 * value


@pytest.mark.parametrize(
    ("granularity", "bucket", "dimension", "group_by"),
    [
        ("day", "day", "key", "key"),
        ("hour", "day", "team", "team"),
        ("hour", "hour", "provider", None),
        ("day", None, "customer", "customer"),
        ("hour", "day", "model", "model"),
    ],
)
@pytest.mark.parametrize("percentiles", [True, False], ids=["percentiles", "sums only"])
def test_a_series_read_from_rollups_counts_each_record_once(
    granularity, bucket, dimension, group_by, percentiles
):
    from governance.selectors import usage_series_from_rollups

    some_records(count=900, seed=4)
    usage_rollup()
    some_records(count=40, days=0.02, seed=5)  # inserted since the run: read from the log
    cursor = rollups.rollup_cursor()

    points = usage_series_from_rollups(
        dimension=dimension,
        granularity=granularity,
        bucket=bucket,
        group_by=group_by,
        recent=RequestRecord.objects.filter(id__gt=cursor),
        percentiles=percentiles,
    )

    # The same question answered here from the records and histogram_bin, independently.
    expected = records_by_point(RequestRecord.objects.all(), bucket, group_by)
    assert {(p.bucket, p.group) for p in points} == set(expected)
    for point in points:
        records = expected[(point.bucket, point.group)]
        assert point.requests == len(records)
        assert point.errors == sum(r.status >= 400 for r in records)
        assert point.cost_micros == sum(r.cost_micros for r in records)
        assert point.output_tokens == sum(r.output_tokens for r in records)
        if not percentiles:
            assert point.latency_p50_ms is point.latency_p95_ms is point.ttft_p95_ms is None
            continue
        latency = histogram_merge({histogram_bin(r.latency_ms): 1} for r in records)
        assert point.latency_p50_ms == histogram_percentile(latency, 0.5)
        assert point.latency_p99_ms == histogram_percentile(latency, 0.99)
        ttft = histogram_merge({histogram_bin(r.ttft_ms): 1} for r in records if r.ttft_ms)
        assert point.ttft_p95_ms == histogram_percentile(ttft, 0.95)

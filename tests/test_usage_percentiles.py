"""Usage reads' percentiles from stored histograms, and ranges of hours read from daily rows.

The percentiles of a point are defined as ``percentile_cont`` over its bins'
values, each bin repeated as many times as it counts; that is computed
here by expanding the bins, independently of the read path's running sums.
A range that starts or ends off midnight reads the daily rows of the whole
days inside it: checked by removing the hourly rows of those days and
spoiling the daily rows of the days at its ends before reading.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection

from governance.api.filters import usage_points
from governance.generator import Shape, generate
from governance.models import RequestRecord, UsageRollup
from governance.rollups import (
    BIN_COUNT,
    HISTOGRAMS,
    bin_value,
    histogram_bin,
    histogram_merge,
    histogram_pack,
    histogram_percentile,
    histogram_stored_form,
    histogram_unpack,
    stored_histograms_percentiles,
    usage_rollup,
)
from governance.selectors import percentile_cont
from tests.ledger_helpers import assert_rollups_match_the_records, records_by_point, stored_rows

FRACTIONS = (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0)
NOW = dt.datetime(2026, 3, 5, 12, 30, tzinfo=dt.UTC)


def random_histogram(rng: random.Random) -> dict[int, int]:
    """Counts by bin of a few hundred requests around some latency."""
    centre = rng.choice((20, 300, 2_000, 40_000))
    bins = [histogram_bin(max(0, int(rng.lognormvariate(0, 0.8) * centre))) for _ in range(300)]
    return histogram_merge({index: 1} for index in bins)


def expanded_percentile(histograms: list[dict[int, int]], fraction: float) -> float | None:
    values = sorted(
        bin_value(index)
        for counts in histograms
        for index, count in counts.items()
        for _ in range(count)
    )
    return percentile_cont(values, fraction)


@pytest.mark.parametrize("merged", [1, 2, 7], ids=["one row", "two rows", "seven rows"])
def test_percentiles_of_stored_histograms_are_percentile_cont_over_their_bins(merged):
    rng = random.Random(merged)
    for _ in range(20):
        histograms = [random_histogram(rng) for _ in range(merged)]
        # Either form a row may hold: packed, or the object of the bins used.
        stored = [
            histogram_pack(counts) if rng.random() < 0.5 else {str(i): n for i, n in counts.items()}
            for counts in histograms
        ]

        answers = stored_histograms_percentiles(stored, FRACTIONS)

        expected = [expanded_percentile(histograms, fraction) for fraction in FRACTIONS]
        assert answers == expected
        merged_bins = histogram_merge(stored)
        assert merged_bins == histogram_merge(histograms)
        assert [histogram_percentile(merged_bins, f) for f in FRACTIONS] == expected


def test_a_histogram_is_stored_as_its_first_bin_and_the_counts_from_it():
    assert histogram_pack({70: 2, 66: 1, 68: 0}) == [66, 1, 0, 0, 0, 2]
    assert histogram_pack({}) == histogram_pack({5: 0}) == []
    assert histogram_unpack([66, 1, 0, 0, 0, 2]) == {66: 1, 70: 2}
    assert histogram_unpack({"70": 2, "66": 1}) == {66: 1, 70: 2}
    # Packed while at least half the span's bins are used; sparser, the bins used.
    assert histogram_stored_form({70: 2, 66: 1}) == {"66": 1, "70": 2}
    assert histogram_stored_form({69: 2, 66: 1}) == [66, 1, 0, 0, 2]
    assert histogram_stored_form({}) == []


def test_a_histogram_with_one_value_or_none_has_that_value_or_no_percentile():
    assert stored_histograms_percentiles([[]], FRACTIONS) == [None] * len(FRACTIONS)
    assert stored_histograms_percentiles([[], []], (0.5,)) == [None]
    assert stored_histograms_percentiles([[7, 3]], (0.5, 0.99)) == [7.0, 7.0]
    top = BIN_COUNT - 1  # over an hour: the last bin
    assert stored_histograms_percentiles([[top, 1], [0, 1]], (0.0, 1.0)) == [
        0.0,
        bin_value(top),
    ]


def test_the_migration_packs_the_rows_of_the_earlier_form_and_unpacks_them_back():
    migration = importlib.import_module("governance.migrations.0007_rollup_histograms_packed")
    rng = random.Random(3)
    for _ in range(20):
        counts = random_histogram(rng)
        earlier = {str(index): counts[index] for index in sorted(counts)}
        assert migration._packed(earlier) == histogram_stored_form(counts)
        assert migration._unpacked(histogram_pack(counts)) == earlier
    assert migration._packed({}) == [] and migration._unpacked([]) == {}


def some_records() -> None:
    generate(Shape(count=1500, days=3, keys=6, teams=3, customers=2, until=NOW, seed=8))
    usage_rollup()


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


def expected_points(since: dt.datetime, until: dt.datetime, bucket, group_by) -> dict:
    """Per point: the sums and percentile_cont over the records' bins, from the records."""
    records = RequestRecord.objects.filter(time__gte=since, time__lt=until)
    points = records_by_point(records, bucket, group_by)
    expected = {}
    for point, records in points.items():
        latency = [{histogram_bin(r.latency_ms): 1} for r in records]
        ttft = [{histogram_bin(r.ttft_ms): 1} for r in records if r.ttft_ms is not None]
        expected[point] = (
            len(records),
            sum(r.status >= 400 for r in records),
            sum(r.cost_micros for r in records),
            sum(r.input_tokens for r in records),
            expanded_percentile(latency, 0.5),
            expanded_percentile(latency, 0.99),
            expanded_percentile(ttft, 0.95),
        )
    return expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "until", "whole_days"),
    [
        (at(2, 13), at(5, 12), [at(3, 0), at(4, 0)]),
        (at(2, 13), at(4, 0), [at(3, 0)]),
        (at(3, 0), at(5, 7), [at(3, 0), at(4, 0)]),
        (at(3, 2), at(3, 20), []),
    ],
    ids=["both ends off midnight", "ends at midnight", "starts at midnight", "within a day"],
)
@pytest.mark.parametrize(
    ("bucket", "group_by"), [("day", None), ("day", "key"), (None, "model"), ("day", "team")]
)
@pytest.mark.parametrize("percentiles", [True, False], ids=["percentiles", "sums only"])
def test_a_range_of_hours_reads_the_whole_days_inside_it_from_daily_rows(
    since, until, whole_days, bucket, group_by, percentiles
):
    some_records()
    expected = expected_points(since, until, bucket, group_by)
    assert expected
    # What must not be read: the whole days' hours (gone) and the days at the
    # ends (counting a thousand requests more each).
    UsageRollup.objects.filter(granularity="hour", bucket__date__in=whole_days).delete()
    spoilt = UsageRollup.objects.filter(granularity="day").exclude(bucket__in=whole_days)
    for row in spoilt:
        row.requests += 1000
        row.latency_histogram = histogram_pack(
            histogram_merge([row.latency_histogram, {500: 1000}])
        )
        row.save()

    points, source = usage_points(
        data={"since": since.isoformat(), "until": until.isoformat()},
        records=RequestRecord.objects.all(),
        rollups=UsageRollup.objects.all(),
        bucket=bucket,
        group_by=group_by,
        percentiles=percentiles,
    )

    assert source == "rollups"
    answers = {
        (p.bucket, p.group): (
            p.requests,
            p.errors,
            p.cost_micros,
            p.input_tokens,
            p.latency_p50_ms,
            p.latency_p99_ms,
            p.ttft_p95_ms,
        )
        for p in points
    }
    if not percentiles:
        expected = {point: (*sums[:4], None, None, None) for point, sums in expected.items()}
    assert answers == expected


@pytest.mark.django_db
def test_percentiles_of_a_read_from_rollups_are_within_one_percent_of_the_exact_ones():
    some_records()
    since, until = at(2, 13), at(5, 12)

    points, _ = usage_points(
        data={"since": since.isoformat(), "until": until.isoformat()},
        records=RequestRecord.objects.all(),
        rollups=UsageRollup.objects.all(),
        bucket=None,
        group_by="team",
    )

    assert len(points) == 3
    for point in points:
        latencies = sorted(
            RequestRecord.objects.filter(
                time__gte=since, time__lt=until, team_id=point.group
            ).values_list("latency_ms", flat=True)
        )
        for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            exact = percentile_cont(latencies, fraction)
            assert getattr(point, f"latency_{name}_ms") == pytest.approx(exact, rel=0.01)


def rows_of_the_earlier_form(rows) -> None:
    """Rewrite ``rows``' histograms as ``{"bin": count}`` objects, as before migration 0007."""
    for row in rows:
        for name in HISTOGRAMS:
            counts = histogram_unpack(getattr(row, name))
            setattr(row, name, {str(index): counts[index] for index in sorted(counts)})
        row.save()


@pytest.mark.django_db
def test_the_migration_converts_the_stored_rows_both_ways():
    migration = importlib.import_module("governance.migrations.0007_rollup_histograms_packed")
    editor = SimpleNamespace(connection=connection)  # what the migration's functions use

    def histograms() -> list[tuple]:
        return list(UsageRollup.objects.order_by("pk").values_list(*HISTOGRAMS))

    some_records()
    packed, rows = histograms(), (stored_rows("hour"), stored_rows("day"))
    rows_of_the_earlier_form(UsageRollup.objects.all())
    earlier = histograms()
    assert all(isinstance(latency, dict) for latency, _ in earlier)

    migration.pack(apps, editor)

    assert histograms() == packed
    assert (stored_rows("hour"), stored_rows("day")) == rows
    assert_rollups_match_the_records()
    migration.unpack(apps, editor)
    assert histograms() == earlier


@pytest.mark.django_db
def test_rows_still_of_the_earlier_form_read_as_the_packed_ones():
    some_records()
    since, until = at(2, 13), at(5, 12)

    def read():
        return usage_points(
            data={"since": since.isoformat(), "until": until.isoformat()},
            records=RequestRecord.objects.all(),
            rollups=UsageRollup.objects.all(),
            bucket="day",
            group_by="key",
        )[0]

    packed = read()
    # What a worker not yet upgraded writes meanwhile: {"bin": count} objects.
    earlier = UsageRollup.objects.filter(dimension="key")
    rows_of_the_earlier_form(earlier)
    assert isinstance(earlier.first().latency_histogram, dict)

    assert read() == packed

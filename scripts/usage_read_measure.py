"""Time the usage reads of docs/ledger.md with and without latency percentiles.

For a measurement database only (docs/ledger.md, "Usage reads with percentiles"):

    DATABASE_URL=postgres://.../gw_measure .venv/bin/python manage.py migrate
    DATABASE_URL=... .venv/bin/python manage.py generate_request_records 2000000 --seed 6
    DATABASE_URL=... .venv/bin/python manage.py rebuild_rollups
    DATABASE_URL=... .venv/bin/python scripts/usage_read_measure.py --days 30 --runs 3

Each question goes through ``governance.api.filters.usage_points`` (what
``GET /api/v1/usage/`` and the console call), once with percentiles and
once without; the best of ``--runs`` is printed in milliseconds, and the
two answers must have the same points and sums. The range ends at the
newest rolled-up hour; ``--days`` whole UTC days end at the midnight
before it. "from hourly rows" ranges start and end on an hour that is not
midnight (the last ``--days`` times 24 hours).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_micros")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="whole days of the month questions")
    parser.add_argument("--runs", type=int, default=3, help="best of")
    parser.add_argument("--only", help="questions whose name contains this")
    options = parser.parse_args()

    import django

    django.setup()
    from django.db.models import Max

    from governance.api.filters import usage_points
    from governance.models import RequestRecord, UsageRollup

    newest = UsageRollup.objects.filter(granularity="hour").aggregate(b=Max("bucket"))["b"]
    end_hour = newest.astimezone(dt.UTC)  # the newest hour is likely still filling
    midnight = end_hour.replace(hour=0)
    if end_hour == midnight:
        end_hour -= dt.timedelta(hours=5)  # the hourly questions must not start at midnight
    days, hours = dt.timedelta(days=options.days), dt.timedelta(hours=24 * options.days)

    def span(since: dt.datetime, until: dt.datetime) -> dict[str, str]:
        return {"since": since.isoformat(), "until": until.isoformat()}

    last_day = span(end_hour - dt.timedelta(hours=24), end_hour)
    month = span(midnight - days, midnight)
    hourly_month = span(end_hour - hours, end_hour)
    questions = [
        ("last 24 h by hour", last_day, "hour", None),
        ("last 24 h by hour, split by team", last_day, "hour", "team"),
        (f"{options.days} days by day (daily rows)", month, "day", None),
        (f"{options.days} days by day, split by key", month, "day", "key"),
        (f"{options.days} days, one total per key", month, None, "key"),
        (f"last {options.days * 24} h by day (hourly rows at the ends)", hourly_month, "day", None),
        (f"last {options.days * 24} h by day, split by model", hourly_month, "day", "model"),
    ]
    records, rollups = RequestRecord.objects.all(), UsageRollup.objects.all()
    print(f"load {os.getloadavg()[0]:.2f}; month {month}; hours {hourly_month}")
    print("| question | points | source | with percentiles (ms) | sums only (ms) |")
    print("|---|---:|---|---:|---:|")
    for name, data, bucket, group_by in questions:
        if options.only and options.only not in name:
            continue
        timings, answers = {}, {}
        for percentiles in (True, False):
            best = float("inf")
            for _ in range(options.runs):
                started = time.perf_counter()
                points, source = usage_points(
                    data=data,
                    records=records,
                    rollups=rollups,
                    bucket=bucket,
                    group_by=group_by,
                    percentiles=percentiles,
                )
                best = min(best, time.perf_counter() - started)
            timings[percentiles] = best * 1000
            answers[percentiles] = [
                (p.bucket, p.group, *(getattr(p, s) for s in SUMS)) for p in points
            ]
            if percentiles and points and points[0].requests and points[0].latency_p50_ms is None:
                raise SystemExit(f"{name}: no percentiles")
        if answers[True] != answers[False]:
            raise SystemExit(f"{name}: the sums differ with and without percentiles")
        print(
            f"| {name} | {len(answers[True]):,} | {source} | {timings[True]:,.0f} "
            f"| {timings[False]:,.0f} |",
            flush=True,
        )
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

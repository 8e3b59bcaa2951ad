"""``manage.py generate_request_records N``: synthetic request records for scale tests."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from governance.generator import Shape, generate


class Command(BaseCommand):
    help = "Store N synthetic request records spread over the last days (benchmarks, tests)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("count", type=int)
        parser.add_argument("--days", type=float, default=30.0, help="spread over (default 30)")
        parser.add_argument("--keys", type=int, default=200, help="distinct key ids")
        parser.add_argument("--teams", type=int, default=40, help="distinct team ids")
        parser.add_argument("--customers", type=int, default=8, help="distinct customer ids")
        parser.add_argument("--first-key-id", type=int, default=1)
        parser.add_argument("--seed", type=int, default=None, help="for a repeatable data set")
        parser.add_argument(
            "--chunk", type=int, default=1_000_000, help="records per transaction (default 1M)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["count"]
        if count < 0 or options["keys"] < 1 or options["teams"] < 1 or options["customers"] < 1:
            raise CommandError("count must be >= 0 and keys, teams, customers >= 1")
        started = time.monotonic()
        stored = 0
        chunk = max(1, options["chunk"])
        days_per_record = options["days"] / max(count, 1)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=options["days"])
        # One transaction per chunk, each its own slice of the time range, oldest first.
        for offset in range(0, count, chunk):
            size = min(chunk, count - offset)
            shape = Shape(
                count=size,
                days=days_per_record * size,
                keys=options["keys"],
                teams=options["teams"],
                customers=options["customers"],
                first_key_id=options["first_key_id"],
                until=start + dt.timedelta(days=days_per_record * (offset + size)),
                seed=None if options["seed"] is None else options["seed"] + offset,
            )
            stored += generate(shape)
            if count > chunk:
                self.stderr.write(f"{stored}/{count} records, {time.monotonic() - started:.0f}s")
        elapsed = time.monotonic() - started
        self.stdout.write(f"stored {stored} request records in {elapsed:.1f}s")

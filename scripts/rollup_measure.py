"""Time the usage rollup job: a whole backlog's catch-up, then steady-state runs.

For a measurement database only (docs/ledger.md, "Rollups, additive"):

    DATABASE_URL=postgres://.../gw_measure .venv/bin/python manage.py migrate
    DATABASE_URL=... .venv/bin/python manage.py generate_request_records 1000000 --days 4 --seed 11
    DATABASE_URL=... .venv/bin/python scripts/rollup_measure.py --from-empty --steady 60000 --runs 3

``--from-empty`` deletes every rollup row and the job's cursor first (the
catch-up then covers the whole request log); each steady-state run first
stores ``--steady`` generated records in the last minute (what 1,000
requests/s add in a minute), then times one run of the job.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-empty", action="store_true", help="delete the rollups first")
    parser.add_argument("--steady", type=int, default=60_000, help="records per steady run")
    parser.add_argument("--runs", type=int, default=3, help="steady-state runs")
    options = parser.parse_args()

    import django

    django.setup()
    from governance.generator import Shape, generate
    from governance.models import JobCursor, RequestRecord, UsageRollup
    from governance.rollups import rollup_cursor, usage_rollup

    if options.from_empty:
        UsageRollup.objects.all().delete()
        JobCursor.objects.all().delete()
    backlog = RequestRecord.objects.filter(id__gt=rollup_cursor()).count()
    started = time.monotonic()
    run = usage_rollup(time_budget=float("inf"))
    elapsed = time.monotonic() - started
    print(
        f"catch-up: {backlog} records in {elapsed:.1f} s = {backlog / max(elapsed, 1e-9):,.0f} "
        f"records/s, up to id {run.records_seen_up_to} (load {load()})"
    )
    for index in range(options.runs):
        generate(Shape(count=options.steady, days=1 / 1440, seed=1000 + index))
        started = time.monotonic()
        run = usage_rollup(time_budget=float("inf"))
        elapsed = time.monotonic() - started
        print(
            f"steady: {options.steady} new records in {elapsed:.2f} s, {run.hours} hours "
            f"touched (load {load()})"
        )


if __name__ == "__main__":
    main()

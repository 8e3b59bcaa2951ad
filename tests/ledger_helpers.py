"""Finding a request's usage record, written off the request path; rollups recomputed.

Records arrive after the answer (a batch flush, or the Celery worker draining
the stream in cluster mode), and a late flush of an earlier test's requests
may land too: tests tag their requests with an ``x-request-id`` and look for
that tag.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable

from governance.models import RequestRecord, UsageRollup
from governance.rollups import histogram_bin, histogram_merge


def new_tag() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def ledger_entry(request_id: str, moment: dt.datetime, **values: object) -> dict:
    """A ledger entry (the drain's format) of a successful request at ``moment``."""
    return {
        "request_id": request_id,
        "time": moment.timestamp(),
        "key_id": 2,
        "team_id": 1,
        "customer_id": 2,
        "provider": "openai",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "status": 200,
        "cost_micros": 777,
        "latency_ms": 250,
        "ttft_ms": 90,
        **values,
    }


def record_tagged(tag: str, timeout: float = 20.0) -> RequestRecord:
    """The usage record of the request sent with ``x-request-id: tag``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = RequestRecord.objects.filter(client_request_id=tag).first()
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no usage record for the request {tag}")


# --- rollups recomputed here from the records, independently of the job's queries ---

SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_micros")


def _values(record: RequestRecord) -> dict[str, str]:
    """The record's value of each rollup dimension."""
    return {
        "team": "",
        "key": "" if record.key_id is None else str(record.key_id),
        "customer": "" if record.customer_id is None else str(record.customer_id),
        "provider": record.provider,
        "model": record.served_model or record.requested_model,
    }


def expected_rows(granularity: str, up_to_id: int | None = None) -> dict[tuple, dict]:
    """What the rollups must hold, from the records: per bucket, team, dimension and value.

    Only the records with ids up to ``up_to_id`` when given (the job's cursor).
    """
    rows: dict[tuple, dict] = defaultdict(
        lambda: {**dict.fromkeys(SUMS, 0), "latency": Counter(), "ttft": Counter()}
    )
    records = RequestRecord.objects.all()
    if up_to_id is not None:
        records = records.filter(id__lte=up_to_id)
    for record in records:
        moment = record.time.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        if granularity == "day":
            moment = moment.replace(hour=0)
        for dimension, value in _values(record).items():
            row = rows[(moment, record.team_id, dimension, value)]
            row["requests"] += 1
            row["errors"] += record.status >= 400
            for name in SUMS[2:]:
                row[name] += getattr(record, name)
            row["latency"][histogram_bin(record.latency_ms)] += 1
            if record.ttft_ms is not None:
                row["ttft"][histogram_bin(record.ttft_ms)] += 1
    return {
        key: {**row, "latency": dict(row["latency"]), "ttft": dict(row["ttft"])}
        for key, row in rows.items()
    }


def stored_rows(granularity: str) -> dict[tuple, dict]:
    rows = {}
    for rollup in UsageRollup.objects.filter(granularity=granularity):
        key = (rollup.bucket, rollup.team_id, rollup.dimension, rollup.value)
        assert key not in rows, f"two rows for {key}"
        rows[key] = {
            **{name: getattr(rollup, name) for name in SUMS},
            "latency": histogram_merge([rollup.latency_histogram]),
            "ttft": histogram_merge([rollup.ttft_histogram]),
        }
    return rows


def assert_rollups_match_the_records(
    *, up_to_id: int | None = None, since: dt.datetime | None = None
) -> None:
    """The stored rows are what the records (up to ``up_to_id``; buckets from ``since``) make."""
    for granularity in ("hour", "day"):
        expected = expected_rows(granularity, up_to_id)
        stored = stored_rows(granularity)
        if since is not None:
            expected = {key: row for key, row in expected.items() if key[0] >= since}
            stored = {key: row for key, row in stored.items() if key[0] >= since}
        assert expected, "no records to compare"
        assert stored == expected, granularity


def records_by_point(
    records: Iterable[RequestRecord], bucket: str | None, group_by: str | None
) -> dict[tuple, list[RequestRecord]]:
    """The records of each point of a usage series, grouped here in plain Python."""
    from governance.selectors import USAGE_GROUPS

    points: dict[tuple, list[RequestRecord]] = {}
    for record in records:
        moment = record.time.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        moment = None if bucket is None else moment.replace(hour=0) if bucket == "day" else moment
        if group_by is None:
            group = None
        elif group_by == "model":
            group = record.served_model or record.requested_model
        else:
            group = getattr(record, USAGE_GROUPS[group_by])
        points.setdefault((moment, group), []).append(record)
    return points

"""EXPLAIN ANALYZE of the console's request-log queries, one per filter (docs/ledger.md).

    DATABASE_URL=postgres://.../gw_ledger_scale .venv/bin/python scripts/request_log_explain.py

Builds each query as the console does (the REST API's filter set, then a
keyset page of 50 newest first, optionally a later page), runs it three
times warm and prints the plan's execution time and its top node. Ids of a
key, team and the time range are taken from the data (see the
``generate_request_records`` command).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

from governance.api.filters import RequestRecordFilter  # noqa: E402
from governance.models import RequestRecord  # noqa: E402
from governance.selectors import request_log_page  # noqa: E402


def page_query(data: dict[str, str], cursor: str | None = None):  # type: ignore[no-untyped-def]
    records = RequestRecordFilter(data=data, queryset=RequestRecord.objects.all()).qs
    ordered = records.order_by("-time", "-id")
    if cursor:
        from django.db.models import Q

        from governance.selectors import _decode_cursor

        moment, pk = _decode_cursor(cursor)
        ordered = ordered.filter(Q(time__lt=moment) | Q(time=moment, id__lt=pk))
    return ordered[:51]


def _scans(node: dict) -> str:
    """The plan's scans (with their index), e.g. ``Index Scan Backward record_team_time``."""
    if "Relation Name" in node:
        return f"{node['Node Type']} {node.get('Index Name', '')}".strip()
    return " + ".join(_scans(child) for child in node.get("Plans", [])) or node["Node Type"]


def explain(queryset) -> tuple[float, float, str]:  # type: ignore[no-untyped-def]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        best = None
        first = None
        for _ in range(3):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
            plan = plan[0] if isinstance(plan, list) else plan
            took = plan["Execution Time"]
            first = took if first is None else first
            if best is None or took < best[0]:
                best = (took, _scans(plan["Plan"]))
    return first, best[0], best[1]


def main() -> None:
    newest = RequestRecord.objects.order_by("-time").values_list("time", flat=True).first()
    assert newest is not None, "no records: run generate_request_records first"
    some = RequestRecord.objects.order_by("-id").values("key_id", "team_id").first()
    week_ago = (newest - dt.timedelta(days=7)).isoformat()
    six_days_ago = (newest - dt.timedelta(days=6)).isoformat()
    cases = {
        "no filter": {},
        "time range (one day, a week ago)": {"since": week_ago, "until": six_days_ago},
        "key": {"key": str(some["key_id"])},
        "team": {"team": str(some["team_id"])},
        "model (requested or served)": {"model": "gpt-4o"},
        "provider": {"provider": "anthropic"},
        "status 502": {"status": "502"},
        "errors only": {"errors": "true"},
        "team + model + time range": {
            "team": str(some["team_id"]),
            "model": "claude-sonnet-4",
            "since": week_ago,
            "until": six_days_ago,
        },
        "key + errors only": {"key": str(some["key_id"]), "errors": "true"},
        "key + status 504 (rare)": {"key": str(some["key_id"]), "status": "504"},
        "customer": {"customer": "3"},
        "model nobody uses": {"model": "no-such-model"},
        "key nobody uses": {"key": "987654"},
        "errors only + provider + one hour": {
            "errors": "true",
            "provider": "gemini",
            "since": week_ago,
            "until": (newest - dt.timedelta(days=7) + dt.timedelta(hours=1)).isoformat(),
        },
        "provider + status 400 + time range": {
            "provider": "bedrock",
            "status": "400",
            "since": week_ago,
            "until": six_days_ago,
        },
    }
    total = RequestRecord.objects.count()
    print(f"{total:,} records; page of 50 newest first: first run / best of 3, in ms")
    print("| filter | page 1 | page 200 (or last) | scans of page 1 |")
    print("|---|---:|---:|---|")
    for name, data in cases.items():
        cold, warm, plan = explain(page_query(data))
        # A later page: walk the cursor there (keyset: costs what the first does).
        records = RequestRecordFilter(data=data, queryset=RequestRecord.objects.all()).qs
        cursor, pages = None, 1
        while pages < 200:
            following = request_log_page(records=records, cursor=cursor).next_cursor
            if following is None:
                break
            cursor, pages = following, pages + 1
        later = "n/a"
        if cursor:
            later_cold, later_warm, _ = explain(page_query(data, cursor))
            later = f"{later_cold:.1f} / {later_warm:.1f} (page {pages})"
        print(f"| {name} | {cold:.1f} / {warm:.1f} | {later} | {plan} |")


if __name__ == "__main__":
    main()

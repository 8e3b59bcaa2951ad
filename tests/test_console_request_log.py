"""The request log explorer: filters, keyset pages through many rows, the detail page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.models import RequestRecord
from governance.selectors import request_log_page
from tests.console_helpers import record

pytestmark = pytest.mark.django_db


def ids(response) -> list[str]:
    return [r.request_id for r in response.context["records"]]


def test_pages_follow_each_other_without_repeats_or_gaps(console, who):
    now = timezone.now()
    # Many records share a timestamp: the cursor must still split them exactly.
    for n in range(120):
        record(console.key, request_id=f"bulk-{n:03d}", time=now - dt.timedelta(seconds=n // 7))
    seen: list[str] = []
    url = reverse("governance:request_log") + f"?key={console.key.pk}"
    while url:
        response = who.admin.get(url)
        seen += ids(response)
        url = (
            response.context["next_url"]
            and reverse("governance:request_log") + response.context["next_url"]
        )
    expected = list(
        RequestRecord.objects.filter(key_id=console.key.pk)
        .order_by("-time", "-id")
        .values_list("request_id", flat=True)
    )
    assert seen == expected
    assert len(seen) == 121


def test_a_page_costs_the_same_few_queries_however_deep(console):
    for n in range(30):
        record(console.key, request_id=f"deep-{n}")
    records = RequestRecord.objects.all()
    first = request_log_page(records=records, size=10)
    with CaptureQueriesContext(connection) as queries:
        request_log_page(records=records, cursor=first.next_cursor, size=10)
    assert len(queries) == 1
    assert "OFFSET" not in queries[0]["sql"].upper()


def test_filters_narrow_by_status_model_provider_team_and_time(console, who):
    url = reverse("governance:request_log")
    assert ids(who.admin.get(url, {"errors": "true"})) == ["req-ads-1"]
    assert ids(who.admin.get(url, {"errors": "false"})) == ["req-search-1"]
    assert ids(who.admin.get(url, {"status": "200"})) == ["req-search-1"]
    assert ids(who.admin.get(url, {"team": console.team.pk})) == ["req-search-1"]
    assert ids(who.admin.get(url, {"model": "claude"})) == []
    assert len(ids(who.admin.get(url, {"provider": "openai", "model": "gpt-4o"}))) == 2
    later = (timezone.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(who.admin.get(url, {"since": later})) == []


def test_a_bad_filter_shows_its_error_and_no_rows(console, who):
    response = who.admin.get(reverse("governance:request_log"), {"status": "teapot"})
    assert "status" in response.context["form"].errors
    assert ids(response) == []


def test_a_team_manager_cannot_filter_their_way_into_another_team(console, who):
    url = reverse("governance:request_log")
    response = who.manager.get(url, {"team": console.other_team.pk})
    assert ids(response) == []
    assert ids(who.manager.get(url)) == ["req-search-1"]


def test_a_forged_cursor_is_not_found(who):
    assert (
        who.admin.get(reverse("governance:request_log"), {"cursor": "bm9wZQ=="}).status_code == 404
    )


def test_the_detail_page_shows_the_whole_record(console, who):
    page = who.admin.get(reverse("governance:request_detail", args=["req-search-1"]))
    text = page.content.decode()
    assert "search-prod" in text and "1.5" in text and "80 ms total" in text

"""The request log over the API: filters, ordering, cursor pages, details, and who sees what."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from governance.models import RequestRecord
from tests.api_fixtures import ApiWorld, error_of

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
_ids = itertools.count()


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def record(world: ApiWorld, minutes: int, **fields) -> RequestRecord:
    values = {
        "request_id": f"log-{next(_ids)}",
        "time": NOON + dt.timedelta(minutes=minutes),
        "status": 200,
        "team_id": world.team.pk,
        "key_id": world.key.pk,
        "customer_id": world.customer.pk,
        "provider": "openai",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
    }
    values.update(fields)
    return RequestRecord.objects.create(**values)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["request_id"] for row in response.json()["results"]]


def test_it_lists_newest_first_in_cursor_pages(world):
    RequestRecord.objects.all().delete()
    made = [record(world, minutes) for minutes in range(5)]
    client = world.client("admin")

    first = client.get("/api/v1/request-log/?page_size=2").json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()

    newest_first = [r.request_id for r in reversed(made)]
    pages = [first, second, third]
    assert [row["request_id"] for p in pages for row in p["results"]] == newest_first
    assert third["next"] is None
    assert "count" not in first  # no COUNT(*) over millions of rows


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("since=2026-03-02T12:01:00Z&until=2026-03-02T12:03:00Z", {"b", "c"}),
        ("since=2026-03-02T13:01:00%2B01:00", {"b", "c", "d", "e"}),
        ("status=429", {"d"}),
        ("errors=true", {"d", "e"}),
        ("errors=false", {"a", "b", "c"}),
        ("provider=anthropic", {"e"}),
        ("model=claude-sonnet", {"e"}),
        ("model=gpt-4o-2024-08-06", {"c"}),
    ],
)
def test_it_filters_by_time_status_provider_and_model(world, query, expected):
    RequestRecord.objects.all().delete()
    record(world, 0, request_id="a")
    record(world, 1, request_id="b")
    record(world, 2, request_id="c", served_model="gpt-4o-2024-08-06")
    record(world, 3, request_id="d", status=429)
    record(
        world,
        4,
        request_id="e",
        status=502,
        provider="anthropic",
        requested_model="claude-sonnet",
        served_model="",
    )

    assert set(ids(world.client("admin").get(f"/api/v1/request-log/?{query}"))) == expected


def test_it_filters_by_key_team_and_customer(world):
    client = world.client("admin")

    assert ids(client.get(f"/api/v1/request-log/?key={world.key.pk}")) == ["r-search"]
    assert ids(client.get(f"/api/v1/request-log/?team={world.other_team.pk}")) == ["r-ads"]
    assert ids(client.get("/api/v1/request-log/?customer=999999")) == []


def test_it_orders_by_latency_when_asked(world):
    RequestRecord.objects.all().delete()
    record(world, 0, request_id="slow", latency_ms=900)
    record(world, 1, request_id="fast", latency_ms=10)
    record(world, 2, request_id="middle", latency_ms=100)

    listed = ids(world.client("admin").get("/api/v1/request-log/?ordering=latency_ms"))

    assert listed == ["fast", "middle", "slow"]


def test_a_record_has_a_detail_view(world):
    response = world.client("admin").get(f"/api/v1/request-log/{world.record.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == "r-search"
    assert {"status", "latency_ms", "cost_micros", "input_tokens", "client_ip"} <= set(body)


def test_a_team_manager_sees_only_their_teams_records(world):
    client = world.client("manager")

    assert ids(client.get("/api/v1/request-log/")) == ["r-search"]
    response = client.get(f"/api/v1/request-log/{world.other_record.pk}/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_the_request_log_cannot_be_written(world):
    client = world.client("admin")

    response = client.post("/api/v1/request-log/", {"request_id": "x"}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert client.delete(f"/api/v1/request-log/{world.record.pk}/").status_code == 405


def test_an_invalid_filter_or_cursor_is_refused_in_the_envelope(world):
    client = world.client("admin")

    bad_time = client.get("/api/v1/request-log/?since=yesterday")
    bad_cursor = client.get("/api/v1/request-log/?cursor=garbage")

    assert bad_time.status_code == 400 and "since" in error_of(bad_time)["fields"]
    assert bad_cursor.status_code == 404 and error_of(bad_cursor)["code"] == "not_found"

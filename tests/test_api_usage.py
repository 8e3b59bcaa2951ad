"""Usage over the API: the request log summed by hour or day and by owner, provider or model."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from governance.models import RequestRecord
from tests.api_fixtures import ApiWorld, error_of

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
_ids = itertools.count()


@pytest.fixture
def world() -> ApiWorld:
    world = ApiWorld()
    RequestRecord.objects.all().delete()
    for team, hours, status, cost, latency in (
        (world.team, 1, 200, 100, 50),
        (world.team, 2, 500, 0, 150),
        (world.team, 26, 200, 40, 70),
        (world.other_team, 1, 200, 1000, 10),
    ):
        RequestRecord.objects.create(
            request_id=f"u-{next(_ids)}",
            time=DAY + dt.timedelta(hours=hours),
            team_id=team.pk,
            status=status,
            cost_micros=cost,
            latency_ms=latency,
            input_tokens=10,
            output_tokens=5,
            provider="openai",
            served_model="gpt-4o",
        )
    return world


def usage(client, query: str = "") -> dict:
    response = client.get(f"/api/v1/usage/?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_it_sums_the_log_per_day(world):
    body = usage(world.client("admin"), "bucket=day")

    assert (body["bucket"], body["group_by"]) == ("day", None)
    first, second = body["results"]
    assert first["bucket"] == "2026-03-02T00:00:00Z"
    assert (first["requests"], first["errors"], first["cost_micros"]) == (3, 1, 1100)
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (30, 15, 45)
    assert first["latency_p50_ms"] == pytest.approx(50)
    assert (second["requests"], second["cost_micros"]) == (1, 40)


def test_it_splits_by_team_with_names_and_takes_the_logs_filters(world):
    body = usage(world.client("admin"), f"bucket=total&group_by=team&until={DAY.date()}T12:00:00Z")

    rows = {row["group_label"]: row for row in body["results"]}
    assert set(rows) == {"search", "ads"}
    assert rows["search"]["requests"] == 2
    assert rows["search"]["group"] == world.team.pk
    assert rows["ads"]["cost_micros"] == 1000


def test_it_sums_per_hour_and_leaves_out_what_the_filters_exclude(world):
    body = usage(world.client("admin"), "bucket=hour&errors=false")

    assert [(row["bucket"], row["requests"]) for row in body["results"]] == [
        ("2026-03-02T01:00:00Z", 2),
        ("2026-03-03T02:00:00Z", 1),
    ]


def test_a_team_manager_sums_only_their_teams_records(world):
    body = usage(world.client("manager"), "bucket=total")

    (total,) = body["results"]
    assert total["requests"] == 3
    assert total["cost_micros"] == 140


def test_an_unknown_bucket_or_grouping_is_a_400(world):
    response = world.client("admin").get("/api/v1/usage/?bucket=week&group_by=colour")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"bucket", "group_by"}


def test_an_auditor_has_no_usage(world):
    assert world.client("auditor").get("/api/v1/usage/").status_code == 403


def test_points_come_in_time_order_whatever_the_query_says(world):
    body = usage(world.client("admin"), "bucket=day&ordering=-bucket")

    buckets = [row["bucket"] for row in body["results"]]
    assert buckets == sorted(buckets)

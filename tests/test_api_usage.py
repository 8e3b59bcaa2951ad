"""Usage over the API: the request log summed by hour or day and by owner, provider or model.

Read from the rollups (the fixture runs the rollup job, as the schedule
would), or from the request log itself for filters rollups do not hold.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from governance.models import RequestRecord
from governance.rollups import usage_rollup
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
    usage_rollup()
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


def test_whole_hours_come_from_the_rollups_and_a_status_filter_from_the_log(world):
    client = world.client("admin")

    assert usage(client, "bucket=day")["source"] == "rollups"
    assert usage(client, f"bucket=hour&since={DAY.date()}T01:00:00Z")["source"] == "rollups"
    assert usage(client, "bucket=day&status=500")["source"] == "records"
    assert usage(client, f"bucket=hour&since={DAY.date()}T01:30:00Z")["source"] == "records"


def test_rollups_and_the_log_give_the_same_answer(world):
    client = world.client("admin")
    for query in ("bucket=hour&group_by=team", "bucket=day&group_by=model", "bucket=total"):
        from_rollups = usage(client, query)
        # A range not on the hour that covers everything reads the log itself.
        from_log = usage(client, f"{query}&since=2026-03-01T23:59:59Z")

        assert (from_rollups["source"], from_log["source"]) == ("rollups", "records")
        assert len(from_rollups["results"]) == len(from_log["results"]) > 0
        for rolled, raw in zip(from_rollups["results"], from_log["results"], strict=True):
            # Percentiles from rollups are within 1% (governance.rollups); the rest is exact.
            exact = {name for name in raw if "_p" not in name}
            assert {n: rolled[n] for n in exact} == {n: raw[n] for n in exact}
            assert rolled["latency_p95_ms"] == pytest.approx(raw["latency_p95_ms"], rel=0.01)


def test_without_percentiles_the_sums_are_the_same_and_the_latencies_null(world):
    client = world.client("admin")
    for query in ("bucket=day&group_by=key", "bucket=hour&group_by=team", "bucket=day&status=200"):
        full = usage(client, query)
        sums = usage(client, f"{query}&percentiles=false")

        assert sums["source"] == full["source"]
        assert len(sums["results"]) == len(full["results"]) > 0
        for light, heavy in zip(sums["results"], full["results"], strict=True):
            assert {n: v for n, v in light.items() if "_p" not in n} == {
                n: v for n, v in heavy.items() if "_p" not in n
            }
            assert light["latency_p95_ms"] is light["ttft_p50_ms"] is None
            assert heavy["latency_p95_ms"] is not None
    assert client.get("/api/v1/usage/?percentiles=maybe").status_code == 400


def test_a_bad_time_is_a_400_in_the_error_envelope(world):
    response = world.client("admin").get("/api/v1/usage/?since=yesterday")

    assert response.status_code == 400
    assert "since" in error_of(response)["fields"]


def test_records_inserted_since_the_last_rollup_run_count_at_once(world):
    client = world.client("admin")
    before = usage(client, "bucket=total")["results"][0]
    RequestRecord.objects.create(
        request_id="u-late",
        time=DAY + dt.timedelta(hours=3),  # a late record of an hour already rolled up
        team_id=world.team.pk,
        status=503,
        cost_micros=5,
        latency_ms=90,
        provider="openai",
        served_model="gpt-4o",
    )

    body = usage(client, "bucket=total")
    (after,) = body["results"]

    assert body["source"] == "rollups"
    assert (after["requests"], after["errors"]) == (before["requests"] + 1, before["errors"] + 1)
    assert after["cost_micros"] == before["cost_micros"] + 5
    usage_rollup()  # once rolled up, it is not counted twice
    assert usage(client, "bucket=total")["results"][0]["requests"] == after["requests"]


def test_an_id_written_as_a_decimal_filters_the_same_from_the_rollups(world):
    RequestRecord.objects.create(
        request_id="u-customer",
        time=DAY,
        team_id=world.team.pk,
        customer_id=world.customer.pk,
        status=200,
        cost_micros=7,
    )
    usage_rollup()
    client = world.client("admin")
    plain = usage(client, f"bucket=total&customer={world.customer.pk}")
    decimal = usage(client, f"bucket=total&customer={world.customer.pk}.0")

    assert plain["source"] == decimal["source"] == "rollups"
    assert [row["cost_micros"] for row in plain["results"]] == [7]
    assert plain["results"] == decimal["results"]


def test_an_answer_of_too_many_points_is_refused_with_what_to_change(world, monkeypatch):
    from governance.api import views

    monkeypatch.setattr(views, "MAX_USAGE_POINTS", 2)
    client = world.client("admin")

    refused = client.get("/api/v1/usage/?bucket=hour")
    allowed = client.get("/api/v1/usage/?bucket=day")

    assert refused.status_code == 400
    error = error_of(refused)
    assert "3 points, more than 2" in error["fields"]["bucket"][0]
    assert "narrow the time range" in error["fields"]["bucket"][0]
    assert allowed.status_code == 200 and len(allowed.json()["results"]) == 2

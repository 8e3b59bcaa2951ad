"""``/metrics`` of a gateway with several worker processes counts every request
exactly once, whichever worker answers the scrape; labels stay bounded and the
endpoint is closed to anyone without the token when one is set."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_env
from tests.governance_helpers import fire
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def scrape(client: httpx.Client, **headers: str) -> dict[str, dict[tuple, float]]:
    """Samples by name, then by their labels (sorted pairs)."""
    answer = client.get("/metrics", headers=headers)
    answer.raise_for_status()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def total(samples: dict, name: str, **match: str) -> float:
    return sum(
        value
        for labels, value in samples.get(name, {}).items()
        if all(dict(labels).get(k) == v for k, v in match.items())
    )


@pytest.fixture
def workers(demo, tmp_path):
    """The demo's configuration served by one gateway with two worker processes."""
    server = GatewayProcess(
        gateway_env(
            GATEWAY_METRICS_DIR=str(tmp_path / "metrics"), GATEWAY_METRICS_FLUSH_SECONDS="0.2"
        ),
        workers=2,
    )
    try:
        revision = demo.gateway.client.get("/readyz").json()["config_revision"]
        for _ in range(10):  # each worker answers some of these
            server.wait_for_revision(revision)
        yield server
    finally:
        server.close()


def test_counters_across_workers_match_the_requests_sent(demo, workers):
    statuses = fire([workers.url], demo.key, 60, CHAT, concurrency=12)
    assert statuses == {200: 60}
    assert fire([workers.url], "sk-gw-not-a-key", 7, CHAT, concurrency=7) == {401: 7}
    streamed = [
        workers.client.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"authorization": f"Bearer {demo.key}"},
        )
        for _ in range(5)
    ]
    assert all(answer.status_code == 200 for answer in streamed)
    time.sleep(0.6)  # every worker has written its totals since
    for _ in range(6):  # whichever worker answers, the sums are the same
        samples = scrape(workers.client)
        ok = {"endpoint": "chat_completions", "provider": "mock", "model": "mock-gpt"}
        assert total(samples, "gateway_requests_total", status="200", **ok) == 65
        assert total(samples, "gateway_requests_total", status="200", team="platform") == 65
        assert total(samples, "gateway_refusals_total", code="invalid_api_key") == 7
        assert total(samples, "gateway_request_duration_seconds_count") == 72
        assert total(samples, "gateway_overhead_seconds_count") == 65
        assert total(samples, "gateway_time_to_first_token_seconds_count") == 5
        output = total(samples, "gateway_tokens_total", kind="output")
        assert output == 65 * 16  # the mock's 16-token answer
        assert total(samples, "gateway_cost_micros_total") >= 0
        assert total(samples, "gateway_active_requests") == 0
        assert total(samples, "gateway_active_streams") == 0


def test_an_overhead_histogram_is_finer_than_a_millisecond(demo):
    demo.openai().chat.completions.create(**CHAT)
    samples = scrape(demo.gateway.client)
    bounds = {dict(labels)["le"] for labels in samples["gateway_overhead_seconds_bucket"]}
    assert "0.0005" in bounds and "0.0001" in bounds


def test_client_chosen_model_names_never_become_labels(demo):
    name = f"no-such-model-{uuid.uuid4().hex[:8]}"
    answer = demo.gateway.client.post(
        "/v1/chat/completions",
        json={**CHAT, "model": name},
        headers={"authorization": f"Bearer {demo.key}"},
    )
    assert answer.status_code == 404
    text = demo.gateway.client.get("/metrics").text
    assert name not in text
    assert demo.key not in text


def test_upstream_errors_and_retries_are_counted(demo):
    before = scrape(demo.gateway.client)
    demo.mock.add_rule(status=503, times=1)
    demo.openai().chat.completions.create(**CHAT)
    after = scrape(demo.gateway.client)

    def grew(name, **match):
        return total(after, name, **match) - total(before, name, **match)

    assert grew("gateway_upstream_errors_total", provider="mock", code="upstream_error") == 1
    assert grew("gateway_retries_total", provider="mock") == 1


def test_a_token_closes_the_endpoint(demo, tmp_path):
    server = GatewayProcess(gateway_env(GATEWAY_METRICS_TOKEN="scrape-me-0123456789"))
    try:
        assert server.client.get("/metrics").status_code == 401
        wrong = server.client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = scrape(server.client, authorization="Bearer scrape-me-0123456789")
        assert "gateway_active_requests" in samples
    finally:
        server.close()


def test_without_a_token_production_keeps_the_endpoint_closed(client, settings):
    settings.GATEWAY_METRICS_TOKEN = ""
    settings.GATEWAY_METRICS_PUBLIC = False  # production's default
    answer = client.get("/metrics")
    assert answer.status_code == 403
    assert b"GATEWAY_METRICS_TOKEN" in answer.content
    settings.GATEWAY_METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200


def test_team_budgets_show_what_is_left_of_them(demo):
    from governance import services as governance

    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=1_000_000,
        output_micros_per_mtok=2_000_000,
    )
    governance.budget_create(owner=demo.team, amount_micros=5_000_000, period="1d")
    demo.sync()
    labels = (("owner", "platform"), ("period", "1d"), ("scope", "team"))
    before = scrape(demo.gateway.client)
    assert before["gateway_budget_limit_micros"][labels] == 5_000_000
    assert before["gateway_budget_remaining_micros"][labels] == 5_000_000
    demo.openai().chat.completions.create(**CHAT)
    after = scrape(demo.gateway.client)
    used = 5_000_000 - after["gateway_budget_remaining_micros"][labels]
    cost = total(after, "gateway_cost_micros_total") - total(before, "gateway_cost_micros_total")
    assert used == cost > 0


def test_cluster_mode_shows_the_usage_stream_and_celery_backlogs(demo):
    from django.conf import settings

    if not settings.REDIS_URL:
        samples = scrape(demo.gateway.client)
        assert "gateway_usage_stream_records" not in samples
        return
    # No worker drains the stream here: this request's record waits in it.
    demo.openai().chat.completions.create(**CHAT)
    time.sleep(1.0)
    samples = scrape(demo.gateway.client)
    assert samples["gateway_usage_stream_records"][()] >= 1
    assert samples["gateway_celery_queue_tasks"][()] >= 0


def test_closed_budget_periods_are_counted_by_reconciliation_verdict(demo):
    import datetime as dt

    from governance import services as governance

    before = scrape(demo.gateway.client)
    assert {
        dict(labels)["verdict"]: value
        for labels, value in before["gateway_budget_reconciliation_total"].items()
    } == {"matched": 0, "mismatch": 0, "no_counter": 0}
    budget = governance.budget_create(owner=demo.team, amount_micros=5_000, period="1h")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    # (spent per the request log, the counter's final value): matched, mismatch twice, no counter.
    for hour, (spent, counter) in enumerate([(100, 100), (100, 150), (80, 0), (90, None)]):
        governance.budget_period_close(
            budget=budget,
            period_start=start + dt.timedelta(hours=hour),
            period_end=start + dt.timedelta(hours=hour + 1),
            spent_micros=spent,
            requests=1,
            counter_micros=counter,
        )

    after = scrape(demo.gateway.client)

    assert after["gateway_budget_reconciliation_total"] == {
        (("verdict", "matched"),): 1,
        (("verdict", "mismatch"),): 2,
        (("verdict", "no_counter"),): 1,
    }

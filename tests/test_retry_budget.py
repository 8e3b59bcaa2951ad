"""During a sustained outage the retry budget caps the upstream attempts at
the requests plus a share of them, instead of every request being tried
GATEWAY_RETRIES + 1 times; a healthy provider is still retried."""

from __future__ import annotations

import pytest

from tests.conftest import gateway_env
from tests.governance_helpers import fire
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = 60


@pytest.fixture
def budgeted(demo):
    server = GatewayProcess(
        gateway_env(
            GATEWAY_RETRIES="2",
            GATEWAY_RETRY_BACKOFF_SECONDS="0.001",
            GATEWAY_RETRY_BACKOFF_MAX_SECONDS="0.002",
            GATEWAY_RETRY_BUDGET_RATIO="0.2",
            GATEWAY_RETRY_BUDGET_MIN_RETRIES="3",
            GATEWAY_RETRY_BUDGET_WINDOW_SECONDS="60",
        )
    )
    try:
        server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        yield server
    finally:
        server.close()


def test_a_sustained_outage_is_not_multiplied_by_retries(demo, budgeted):
    demo.mock.add_rule(status=503)
    statuses = fire([budgeted.url], demo.key, REQUESTS, CHAT, concurrency=4)
    assert statuses == {502: REQUESTS}
    attempts = demo.mock.request_count()
    # Without a budget: 3 attempts each (180). With it: the requests, a fifth
    # more, and the floor.
    assert REQUESTS <= attempts <= REQUESTS + REQUESTS * 0.2 + 3
    text = budgeted.client.get("/metrics").text
    assert 'gateway_retry_budget_exhausted_total{provider="mock"}' in text


def test_an_occasional_failure_is_still_retried(demo, budgeted):
    demo.mock.add_rule(status=503, times=1)
    ok = budgeted.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert ok.status_code == 200
    assert ok.headers["x-gateway-retries"] == "1"

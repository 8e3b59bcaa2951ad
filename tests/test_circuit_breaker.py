"""A deployment's circuit breaker opens after repeated failures, sends
requests to the fallback (or answers 503 at once) without touching the
failing provider, lets one probe through after the open period, and closes
on success; in cluster mode every gateway process agrees."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from django.conf import settings

from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
OPEN_SECONDS = 3


def breaker_env(**extra: str) -> dict[str, str]:
    """A breaker that opens after three failures, shared under a Redis prefix
    of this test's own (the session's gateway must not hear of it)."""
    return gateway_env(
        GATEWAY_BREAKER_MIN_FAILURES="3",
        GATEWAY_RETRIES="0",
        GATEWAY_REDIS_PREFIX=f"gwbreaker-{uuid.uuid4().hex[:8]}",
        **extra,
    )


@pytest.fixture
def gateways(demo):
    """Two gateway processes sharing Redis (cluster mode), one embedded, with
    a breaker that opens after three failures for three seconds."""
    env = breaker_env(GATEWAY_BREAKER_OPEN_SECONDS=str(OPEN_SECONDS))
    count = 2 if settings.REDIS_URL else 1
    processes = [GatewayProcess(env) for _ in range(count)]
    try:
        revision = demo.gateway.client.get("/readyz").json()["config_revision"]
        for process in processes:
            process.wait_for_revision(revision)
        yield processes
    finally:
        for process in processes:
            process.close()


def chat(gateway, key, **extra) -> httpx.Response:
    return gateway.client.post(
        "/v1/chat/completions",
        json={**CHAT, **extra},
        headers={"authorization": f"Bearer {key}"},
    )


def until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_it_opens_probes_and_closes(demo, gateways):
    first = gateways[0]
    demo.mock.add_rule(match={"model": "mock-gpt"}, status=503)
    assert [chat(first, demo.key).status_code for _ in range(3)] == [502, 502, 502]
    assert demo.mock.request_count() == 3

    # Open: refused at once, the provider left alone, by every process.
    for gateway in gateways:
        assert until(lambda g=gateway: chat(g, demo.key).status_code == 503)
        refused = chat(gateway, demo.key)
        assert refused.json()["error"]["code"] == "circuit_open"
        assert 1 <= int(refused.headers["retry-after"]) <= OPEN_SECONDS
    assert demo.mock.request_count() == 3
    metrics = first.client.get("/metrics").text
    assert 'gateway_circuit_open{model="mock-gpt",provider="mock"} 1.0' in metrics

    # Half-open, still failing: one probe, then open again.
    time.sleep(OPEN_SECONDS + 0.2)
    assert chat(first, demo.key).status_code == 502
    assert demo.mock.request_count() == 4
    assert chat(first, demo.key).json()["error"]["code"] == "circuit_open"

    # Half-open, healthy again: the probe succeeds and the breaker closes everywhere.
    demo.mock.reset()
    time.sleep(OPEN_SECONDS + 0.2)
    assert chat(first, demo.key).status_code == 200
    for gateway in gateways:
        assert chat(gateway, demo.key).status_code == 200
    assert 'gateway_circuit_open{model="mock-gpt",provider="mock"} 0.0' in (
        first.client.get("/metrics").text
    )


def test_an_open_breaker_sends_requests_to_the_fallback(demo, gateways):
    first = gateways[0]
    demo.mock.add_rule(match={"model": "mock-gpt"}, status=503)
    for _ in range(3):
        chat(first, demo.key)
    demo.mock.reset()
    demo.mock.add_rule(match={"model": "mock-gpt"}, status=503)
    answer = chat(first, demo.key, fallbacks=["mock/mock-gpt-mini"])
    assert answer.status_code == 200
    assert answer.headers["x-gateway-model"] == "mock-gpt-mini"
    assert answer.headers["x-gateway-fallback-index"] == "1"
    # The open deployment was not tried.
    assert [r["body"]["model"] for r in demo.mock.requests()] == ["mock-gpt-mini"]


def test_a_request_error_does_not_count_against_the_provider(demo, gateways):
    first = gateways[0]
    demo.mock.add_rule(match={"model": "mock-gpt"}, status=400)
    for _ in range(5):
        assert chat(first, demo.key).status_code == 400
    demo.mock.reset()
    assert chat(first, demo.key).status_code == 200


@pytest.mark.skipif(not settings.REDIS_URL, reason="replicas share breakers in cluster mode")
def test_a_process_that_starts_while_a_breaker_is_open_knows_it(demo):
    env = breaker_env(GATEWAY_BREAKER_OPEN_SECONDS="60")
    revision = demo.gateway.client.get("/readyz").json()["config_revision"]
    first = GatewayProcess(env)
    late = None
    try:
        first.wait_for_revision(revision)
        demo.mock.add_rule(match={"model": "mock-gpt"}, status=503)
        for _ in range(3):
            chat(first, demo.key)
        late = GatewayProcess(env)
        late.wait_for_revision(revision)
        refused = chat(late, demo.key)
        assert refused.json()["error"]["code"] == "circuit_open"
        assert demo.mock.request_count() == 3
    finally:
        for process in (first, late):
            if process is not None:
                process.close()

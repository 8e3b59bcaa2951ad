"""Retries, key rotation and fallbacks keep requests working through failures."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from governance.models import RequestRecord
from keys import services
from keys.models import ModelRoute

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
PRIMARY = "sk-mock-primary-0001"


def post(demo, body=CHAT, **headers):
    headers["authorization"] = f"Bearer {demo.key}"
    return demo.gateway.client.post("/v1/chat/completions", json=body, headers=headers)


def used_keys(demo) -> list[str]:
    return [request["api_key"] for request in demo.mock.requests()]


@pytest.fixture
def backup(demo):
    """A second provider (same mock, its own key) as the route's fallback."""
    provider = services.provider_create(
        name="backup",
        kind="openai",
        base_url=f"{demo.mock.url}/v1",
        allow_private_network=True,
    )
    services.provider_key_create(provider=provider, name="main", secret="sk-mock-backup-0001")
    services.model_route_update(
        route=ModelRoute.objects.get(name="gpt-4o-mini"), fallbacks=["backup/mock-gpt-mini"]
    )
    demo.sync()
    return provider


def test_a_provider_outage_falls_back_to_the_next_deployment(demo, backup, celery_worker):
    demo.mock.add_rule(match={"api_key": PRIMARY}, status=503)
    tag = uuid.uuid4().hex[:8]
    response = post(demo, **{"x-request-id": tag})
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "backup"
    assert response.headers["x-gateway-model"] == "mock-gpt-mini"
    assert response.headers["x-gateway-fallback-index"] == "1"
    # Three tries on the primary (1 + 2 retries), then the fallback.
    assert used_keys(demo) == [PRIMARY] * 3 + ["sk-mock-backup-0001"]
    deadline = time.monotonic() + 10
    while not RequestRecord.objects.filter(client_request_id=tag).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    record = RequestRecord.objects.get(client_request_id=tag)
    assert (record.fallback_index, record.retries, record.provider) == (1, 3, "backup")


def test_a_transient_error_is_retried_on_the_same_deployment(demo):
    demo.mock.add_rule(match={}, status=500, times=2)
    response = post(demo)
    assert response.status_code == 200
    assert response.headers["x-gateway-retries"] == "2"
    assert response.headers["x-gateway-fallback-index"] == "0"
    assert demo.mock.request_count() == 3


def test_a_rate_limited_key_is_cooled_down_and_another_key_takes_over(demo):
    services.provider_key_create(
        provider=demo.provider, name="second", secret="sk-mock-second-0002"
    )
    demo.sync()
    demo.mock.add_rule(match={"api_key": PRIMARY}, status=429, retry_after=30)
    started = time.monotonic()
    for _ in range(10):
        assert post(demo).status_code == 200
    # No waiting for Retry-After: the other key answered at once.
    assert time.monotonic() - started < 5
    keys = used_keys(demo)
    # The rate-limited key was tried at most once, then left alone.
    assert keys.count(PRIMARY) <= 1
    assert keys.count("sk-mock-second-0002") == 10


def test_retry_after_is_honoured_when_no_other_key_is_left(demo):
    demo.mock.add_rule(match={}, status=503, retry_after=1, times=1)
    started = time.monotonic()
    response = post(demo)
    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0


def test_a_request_error_is_not_retried(demo, backup):
    demo.mock.add_rule(match={}, status=400)
    assert post(demo).status_code == 400
    assert demo.mock.request_count() == 1


def test_when_every_deployment_fails_the_client_gets_the_last_error(demo, backup):
    demo.mock.add_rule(match={}, status=503)
    response = post(demo)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert demo.mock.request_count() == 6


def test_a_request_can_name_its_own_fallbacks(demo):
    demo.mock.add_rule(match={"model": "mock-gpt"}, status=503)
    response = post(demo, {**CHAT, "fallbacks": ["mock/mock-gpt-mini"]})
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "mock-gpt-mini"
    # The gateway's own parameter is not sent to the provider.
    assert all("fallbacks" not in request["body"] for request in demo.mock.requests())


def test_a_fallback_the_key_may_not_use_is_skipped(demo, backup):
    from keys.models import VirtualKey

    services.virtual_key_update(
        key=VirtualKey.objects.get(name="platform-app"), allowed_models=["gpt-4o-mini"]
    )
    demo.sync()
    demo.mock.add_rule(match={"api_key": PRIMARY}, status=503)
    assert post(demo).status_code == 502
    assert "sk-mock-backup-0001" not in used_keys(demo)


def test_nothing_is_retried_once_the_stream_has_started(demo, backup):
    demo.mock.add_rule(match={}, malformed="sse")
    response = post(demo, {**CHAT, "stream": True})
    assert response.status_code == 200
    assert demo.mock.request_count() == 1


def test_a_client_leaving_mid_stream_cancels_the_upstream_request(demo):
    demo.mock.add_rule(match={}, inter_token_ms=200, output_tokens=50)
    with httpx.Client(base_url=demo.gateway.url, timeout=10) as client:
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={**CHAT, "max_tokens": 50, "stream": True},
            headers={"authorization": f"Bearer {demo.key}"},
        ) as response:
            next(response.iter_raw())
        left = time.monotonic()
    deadline = left + 2.0
    while demo.mock.control.get("/_mock/stats").json()["disconnects"] < 1:
        assert time.monotonic() < deadline, "the upstream stream was not cancelled"
        time.sleep(0.01)
    # Measured here well under 100 ms; the bound leaves room for a loaded CI.
    assert time.monotonic() - left < 1.0

"""Rate limits and concurrency caps hold exactly, across gateway processes."""

from __future__ import annotations

import json

import openai
import pytest
from django.conf import settings

from governance import services as governance
from keys import services
from keys.models import VirtualKey
from tests.conftest import gateway_env
from tests.governance_helpers import fire, wait_for_fresh_window
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def replicas(demo):
    """Three gateway processes sharing Redis in cluster mode; one embedded."""
    if not settings.REDIS_URL:
        yield [demo.gateway]
        return
    extra = [GatewayProcess(gateway_env()) for _ in range(2)]
    try:
        for process in extra:
            process.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        yield [demo.gateway, *extra]
    finally:
        for process in extra:
            process.close()


def sync_all(demo, replicas):
    demo.sync()
    from keys import selectors

    for process in replicas:
        process.wait_for_revision(selectors.config_revision())


def key(demo):
    return VirtualKey.objects.get(name="platform-app")


def test_a_request_limit_admits_exactly_the_limit_across_replicas(demo, replicas):
    governance.rate_limit_create(owner=key(demo), metric="requests", limit=100, window_seconds=60)
    sync_all(demo, replicas)
    wait_for_fresh_window(60)
    statuses = fire([r.url for r in replicas], demo.key, 1000, CHAT)
    assert statuses == {200: 100, 429: 900}
    assert demo.mock.request_count() == 100


def test_a_token_limit_admits_exactly_what_fits_across_replicas(demo, replicas):
    # Each request reserves its body size plus max_tokens until its answer
    # settles. The mock holds every answer back, so nothing settles during
    # the burst and exactly limit // reservation requests fit.
    limit = 2000
    governance.rate_limit_create(owner=demo.team, metric="tokens", limit=limit, window_seconds=60)
    sync_all(demo, replicas)
    wait_for_fresh_window(60)
    demo.mock.add_rule(match={}, latency_ms=6000)
    reservation = len(json.dumps(CHAT)) + CHAT["max_tokens"]  # aiohttp's encoding of the body
    fits = limit // reservation
    statuses = fire([r.url for r in replicas], demo.key, 300, CHAT, concurrency=300)
    assert statuses == {200: fits, 429: 300 - fits}
    assert demo.mock.request_count() == fits
    # Each answer settles to its actual use (4 input + 4 output tokens), so
    # the window now holds fits * 8 tokens and the rest fits again exactly.
    demo.mock.reset()
    demo.mock.add_rule(match={}, latency_ms=6000)
    again = (limit - fits * 8) // reservation
    statuses = fire([r.url for r in replicas], demo.key, 100, CHAT, concurrency=100)
    assert statuses == {200: again, 429: 100 - again}


def test_a_concurrency_cap_admits_exactly_that_many_at_once(demo, replicas):
    services.virtual_key_update(key=key(demo), max_concurrent_requests=5)
    sync_all(demo, replicas)
    demo.mock.add_rule(match={}, latency_ms=1500)
    statuses = fire([r.url for r in replicas], demo.key, 40, CHAT, concurrency=40)
    assert statuses == {200: 5, 429: 35}
    # The slots are free again once the answers are in.
    demo.mock.reset()
    assert fire([r.url for r in replicas], demo.key, 5, CHAT) == {200: 5}


def test_the_refusal_carries_retry_after_and_ratelimit_headers(demo):
    governance.rate_limit_create(owner=key(demo), metric="requests", limit=2, window_seconds=60)
    demo.sync()
    wait_for_fresh_window(60, needed=10)
    client = demo.gateway.client
    headers = {"authorization": f"Bearer {demo.key}"}
    first = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    client.post("/v1/chat/completions", json=CHAT, headers=headers)
    refused = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_the_sdk_raises_its_rate_limit_error(demo):
    governance.rate_limit_create(
        owner=demo.team.customer, metric="requests", limit=1, window_seconds=60
    )
    demo.sync()
    wait_for_fresh_window(60, needed=10)
    client = demo.openai()
    client.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.body["code"] == "rate_limit_exceeded"

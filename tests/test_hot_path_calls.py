"""The hot path's promise, counted on a real gateway: no database query per
request, and at most one Redis round trip before the upstream call and one
after (cluster mode; none in embedded mode), streamed or not, with a rate
limit, a concurrency cap and a budget on the key (governance fully on)."""

from __future__ import annotations

import pytest
from django.conf import settings

from governance import services as governance
from keys import services
from keys.models import VirtualKey
from tests.test_metrics import scrape, total

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
REQUESTS = 40  # of each kind


def calls(demo, store: str, origin: str = "request") -> float:
    samples = scrape(demo.gateway.client)
    return total(samples, "gateway_backend_calls_total", store=store, origin=origin)


@pytest.mark.parametrize(
    ("team_keeps", "key_choice"),
    [(False, "inherit"), (True, "inherit"), (False, "on")],
    ids=["usage only", "content kept", "content kept by the key"],
)
def test_requests_make_no_database_query_and_at_most_two_redis_round_trips(
    demo, team_keeps, key_choice
):
    # Message content rides in the same usage record, and the key's choice is
    # resolved in the snapshot: no call more.
    services.team_update(team=demo.team, store_content=team_keeps)
    key = VirtualKey.objects.get(name="platform-app")
    services.virtual_key_update(key=key, store_content=key_choice)
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=1_000_000,
        output_micros_per_mtok=2_000_000,
    )
    governance.rate_limit_create(owner=key, metric="requests", limit=10_000, window_seconds=60)
    governance.rate_limit_create(owner=demo.team, metric="tokens", limit=10**9, window_seconds=60)
    governance.budget_create(owner=key, amount_micros=10**12, period="1d")
    services.virtual_key_update(key=key, max_concurrent_requests=50)
    demo.sync()
    client = demo.openai()
    client.chat.completions.create(**CHAT)  # first use: connections, caches
    before = {store: calls(demo, store) for store in ("redis", "database")}

    for _ in range(REQUESTS):
        assert client.chat.completions.create(**CHAT).choices[0].message.content
        chunks = list(client.chat.completions.create(**CHAT, stream=True))
        assert chunks

    redis = calls(demo, "redis") - before["redis"]
    database = calls(demo, "database") - before["database"]
    assert database == 0
    if settings.REDIS_URL:
        # One admission and one settlement per request; never more.
        assert 2 * REQUESTS <= redis <= 2 * (2 * REQUESTS)
    else:
        assert redis == 0
    # Background work (refreshes, flushes) is counted apart: the counter works.
    assert calls(demo, "database", origin="background") > 0

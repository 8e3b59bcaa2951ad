"""Several API keys of one provider share its traffic by weight, within
statistical tolerance over many requests; a key of weight 0 gets none."""

from __future__ import annotations

from collections import Counter

from keys import services
from tests.governance_helpers import fire

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = 600


def test_keys_share_requests_in_proportion_to_their_weights(demo):
    more = (("second", "sk-mock-second-02", 3), ("idle", "sk-mock-idle-03", 0))
    for name, secret, weight in more:
        services.provider_key_create(
            provider=demo.provider, name=name, secret=secret, weight=weight
        )
    demo.sync()
    assert fire([demo.gateway.url], demo.key, REQUESTS, CHAT, concurrency=16) == {200: REQUESTS}
    used = Counter(request["api_key"] for request in demo.mock.requests(limit=REQUESTS))
    assert sum(used.values()) == REQUESTS
    assert "sk-mock-idle-03" not in used
    # Weights 1 : 3 → a quarter and three quarters; ±5 points is over 5 sigma here.
    share = used["sk-mock-primary-0001"] / REQUESTS
    assert 0.20 <= share <= 0.30, used
    assert used["sk-mock-second-02"] == REQUESTS - used["sk-mock-primary-0001"]

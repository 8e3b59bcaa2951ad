"""Guessing virtual keys: failures are limited per client address, unknown
keys cost at most one database lookup, and secrets are compared in constant
time."""

from __future__ import annotations

import hmac

import anthropic
import openai
import pytest

from keys import selectors, tokens
from tests.conftest import gateway_env
from tests.processes import GatewayProcess
from tests.reliability_report import add_row

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
LIMIT = 5


@pytest.fixture
def guarded(demo):
    """A gateway with a real failure limit (the session's has none); the
    client's address comes from X-Forwarded-For (the tests' 127.0.0.1 is a
    trusted proxy), so each test can play several clients."""
    server = GatewayProcess(
        gateway_env(
            GATEWAY_AUTH_FAILURE_LIMIT=str(LIMIT),
            GATEWAY_AUTH_FAILURE_WINDOW_SECONDS="60",
            GATEWAY_NEGATIVE_CACHE_SECONDS="60",
            GATEWAY_KEY_LOOKUPS_PER_SECOND="3",
        )
    )
    server.wait_for_revision(selectors.config_revision())
    yield server
    server.close()


def post(server, key: str, address: str, path: str = "/v1/chat/completions"):
    return server.client.post(
        path, json=CHAT, headers={"authorization": f"Bearer {key}", "x-forwarded-for": address}
    )


def lookups(server) -> dict[str, float]:
    found = {}
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith("gateway_key_lookups_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found


def test_an_address_that_sent_too_many_invalid_keys_is_refused_with_429(demo, guarded):
    statuses = [post(guarded, tokens.generate_key(), "203.0.113.7").status_code for _ in range(8)]
    assert statuses == [401] * LIMIT + [429] * 3
    refused = post(guarded, tokens.generate_key(), "203.0.113.7")
    assert refused.json()["error"]["code"] == "too_many_failed_authentications"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # The address is refused before its key is looked at, even a valid one...
    assert post(guarded, demo.key, "203.0.113.7").status_code == 429
    # ...while other clients are not affected.
    assert post(guarded, demo.key, "203.0.113.8").status_code == 200
    add_row(
        "Security",
        f"key guessing from one address (limit {LIMIT} failures a minute)",
        requests=11,
        client_saw=f"401: {LIMIT}, then 429 `too_many_failed_authentications` with Retry-After; "
        "other addresses served",
        lost="nothing",
    )


def test_the_refusal_is_in_the_sdks_own_terms(demo, guarded):
    for _ in range(LIMIT):
        post(guarded, tokens.generate_key(), "203.0.113.9")
    client = openai.OpenAI(
        base_url=f"{guarded.url}/v1",
        api_key=demo.key,
        max_retries=0,
        default_headers={"x-forwarded-for": "203.0.113.9"},
    )
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT)
    claude = anthropic.Anthropic(
        base_url=f"{guarded.url}/anthropic",
        api_key=demo.key,
        max_retries=0,
        default_headers={"x-forwarded-for": "203.0.113.9"},
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(
            model="gpt-4o-mini", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["type"] == "error"


def test_successful_authentications_are_not_counted(demo, guarded):
    for _ in range(3):
        for _ in range(LIMIT):
            assert post(guarded, demo.key, "203.0.113.10").status_code == 200
        assert post(guarded, tokens.generate_key(), "203.0.113.10").status_code == 401
    assert post(guarded, demo.key, "203.0.113.10").status_code == 200


def test_an_unknown_key_is_looked_up_once_then_cached(demo, guarded):
    unknown = tokens.generate_key()
    before = lookups(guarded)
    # From many addresses, so that the per-address limit does not decide.
    for index in range(20):
        assert post(guarded, unknown, f"198.51.100.{index}").status_code == 401
    after = lookups(guarded)
    assert after.get("unknown", 0) - before.get("unknown", 0) == 1


def test_a_flood_of_unknown_prefixes_makes_a_bounded_number_of_lookups(demo, guarded):
    before = lookups(guarded)
    for index in range(30):
        assert post(guarded, tokens.generate_key(), f"192.0.2.{index}").status_code == 401
    after = lookups(guarded)
    made = after.get("unknown", 0) - before.get("unknown", 0)
    deferred = after.get("deferred", 0) - before.get("deferred", 0)
    assert made + deferred == 30
    # At most three a second: far fewer than the 30 requests sent at once.
    assert made <= 3 * 4 and deferred > 0
    add_row(
        "Security",
        "30 random unknown keys from 30 addresses (lookup bound 3/s)",
        requests=30,
        client_saw="401: 30",
        lost=f"nothing; {made:.0f} database lookups made, {deferred:.0f} refused without one",
    )


def test_a_key_created_after_the_snapshot_is_still_found(demo, guarded):
    # The lookup for keys the snapshot does not have yet stays (bounded).
    from keys import services

    _, secret = services.virtual_key_create(name="late", team=demo.team)
    assert post(guarded, secret, "192.0.2.200").status_code == 200


def test_secrets_are_compared_as_hashes_in_constant_time(monkeypatch):
    key = tokens.generate_key()
    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert tokens.hashes_match(key, tokens.hash_key(key))
    assert not tokens.hashes_match(key[:-1] + "0", tokens.hash_key(key))
    # What is compared is the SHA-256 of what the client sent, never the
    # secret itself: equal lengths, nothing the client controls byte by byte.
    assert [len(a) for a, _ in calls] == [64, 64]
    assert all(key not in (a, b) for a, b in calls)

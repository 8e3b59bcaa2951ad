"""Headers between the client and the provider: the provider's rate-limit
headers reach clients that speak its wire format (the virtual key's own limits
take precedence), and a client's opt-in feature headers reach its provider."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from governance import services as governance
from keys.models import VirtualKey

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def test_an_openai_client_sees_the_openai_providers_rate_limit_headers(demo):
    answer = demo.openai().chat.completions.with_raw_response.create(**CHAT)
    assert answer.headers["x-ratelimit-limit-requests"] == "10000"
    assert answer.headers["x-ratelimit-remaining-tokens"] == "1999000"
    assert answer.headers["x-ratelimit-reset-requests"] == "6ms"


def test_a_streamed_answer_carries_them_too(demo):
    with demo.openai().chat.completions.with_streaming_response.create(
        **CHAT, stream=True
    ) as answer:
        assert answer.headers["x-ratelimit-limit-tokens"] == "2000000"


def test_an_anthropic_client_sees_anthropics_rate_limit_headers(claude):
    answer = claude.anthropic().messages.with_raw_response.create(model="claude-sonnet", **MESSAGE)
    assert answer.headers["anthropic-ratelimit-requests-limit"] == "10000"
    assert answer.headers["anthropic-ratelimit-output-tokens-remaining"] == "399999"
    assert answer.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")


def test_translated_answers_carry_no_foreign_rate_limit_headers(claude):
    # Anthropic's headers mean nothing to an OpenAI client, and the other way round.
    to_anthropic = claude.openai().chat.completions.with_raw_response.create(
        model="claude-sonnet", messages=CHAT["messages"]
    )
    assert not [name for name in to_anthropic.headers if "ratelimit" in name]
    to_openai = claude.anthropic().messages.with_raw_response.create(model="gpt-4o-mini", **MESSAGE)
    assert not [name for name in to_openai.headers if "ratelimit" in name]


def test_the_keys_own_limits_take_precedence_over_the_providers(demo):
    key = VirtualKey.objects.get(team=demo.team)
    governance.rate_limit_create(owner=key, metric="requests", limit=50, window_seconds=60)
    demo.sync()
    answer = demo.openai().chat.completions.with_raw_response.create(**CHAT)
    assert answer.headers["x-ratelimit-limit-requests"] == "50"
    # The provider's token limit, which the key does not set, is still relayed.
    assert answer.headers["x-ratelimit-limit-tokens"] == "2000000"
    assert answer.http_response.headers.get_list("x-ratelimit-limit-requests") == ["50"]


def test_a_providers_rate_limit_refusal_carries_its_headers(claude):
    claude.mock.add_rule(status=429, retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.anthropic().messages.create(model="claude-sonnet", **MESSAGE)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_anthropic_beta_reaches_an_anthropic_provider(claude):
    claude.anthropic().messages.create(
        model="claude-sonnet",
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        **MESSAGE,
    )
    claude.anthropic().messages.count_tokens(
        model="claude-sonnet",
        messages=MESSAGE["messages"],
        extra_headers={"anthropic-beta": "token-counting-2024-11-01"},
    )
    sent, counted = claude.mock.requests()
    assert sent["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert counted["headers"]["anthropic-beta"] == "token-counting-2024-11-01"


def test_anthropic_beta_is_not_sent_to_other_providers(claude):
    httpx.post(
        f"{claude.gateway.url}/anthropic/v1/messages",
        headers={"x-api-key": claude.key, "anthropic-beta": "context-1m-2025-08-07"},
        json={"model": "gpt-4o-mini", **MESSAGE},
    ).raise_for_status()
    [sent] = claude.mock.requests()
    assert "anthropic-beta" not in sent["headers"]


def test_no_answer_names_the_server_software(demo):
    # An inference answer, a refusal and a health probe.
    answers = [
        demo.openai().chat.completions.with_raw_response.create(**CHAT),
        httpx.post(f"{demo.gateway.url}/v1/chat/completions", json=CHAT, timeout=10),  # 401
        httpx.get(f"{demo.gateway.url}/healthz", timeout=10),
    ]
    for answer in answers:
        assert "server" not in answer.headers, answer.headers
